package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// ErrNoValue is returned by Lookup when the pointer names nothing, or names
// a value that cannot be a version (null, an object, an array).
var ErrNoValue = errors.New("no scalar value at the JSON pointer")

// Lookup returns the text of the scalar at p in the JSON document doc: a
// string's decoded text, a number's or a boolean's literal. A document that
// is not valid JSON gives a *json.SyntaxError (or another decoding error).
func Lookup(doc []byte, p Pointer) (string, error) {
	raw := json.RawMessage(bytes.TrimSpace(doc))
	if !json.Valid(raw) {
		var v any
		return "", json.Unmarshal(raw, &v) // the same error, with its offset
	}
	raw, ok, err := p.findRaw(raw)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ErrNoValue
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", ErrNoValue
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case '{', '[', 'n':
		return "", ErrNoValue
	}
	return string(raw), nil
}

// ScalarTag turns the text of a version field into the strong entity tag
// the proxy shows clients: `7` and `"7"` both become `"7"`. Bytes that an
// entity tag cannot hold (RFC 9110 section 8.8.3: etagc) are %-escaped, the
// same way for responses and request bodies, so the two compare equal.
func ScalarTag(text string) string {
	var b strings.Builder
	b.Grow(len(text) + 2)
	b.WriteByte('"')
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == 0x21 || (c >= 0x23 && c <= 0x7E && c != '%') || c >= 0x80 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	b.WriteByte('"')
	return b.String()
}

// HashTag is the strong entity tag the proxy makes up from a response body
// for `version hash`: 64 bits of xxHash, fast enough for every GET and, for
// the versions of one resource, collision-free in practice (two states of
// one resource collide with probability 2^-64).
func HashTag(body []byte) string {
	var buf [18]byte
	buf[0] = '"'
	h := xxhash.Sum64(body)
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		buf[1+i] = hex[h&15]
		h >>= 4
	}
	buf[17] = '"'
	return string(buf[:])
}
