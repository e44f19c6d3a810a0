package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

// ErrNoValue is returned by Lookup when the pointer names nothing, or names
// a value that cannot be a version (null, an object, an array).
var ErrNoValue = errors.New("no scalar value at the JSON pointer")

// Lookup returns the text of the scalar at p in the JSON document doc: a
// string's decoded text, a number's or a boolean's literal. A document that
// is not valid JSON gives a *json.SyntaxError (or another decoding error).
func Lookup(doc []byte, p Pointer) (string, error) {
	var buf [64]byte
	text, err := AppendLookup(buf[:0], doc, p)
	if err != nil {
		return "", err
	}
	return string(text), nil
}

// AppendLookup is Lookup that appends the text to dst: with room in dst, it
// allocates nothing. It reads doc once, decodes nothing but the value found
// (Pointer.resolve), and rejects a document that is not JSON anywhere, after
// the value too, as Lookup always did.
func AppendLookup(dst, doc []byte, p Pointer) ([]byte, error) {
	doc = bytes.TrimSpace(doc) // as before: Unicode space around the document is allowed
	start, end, valid := p.resolve(doc)
	if !valid {
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			return dst, err // the same error as encoding/json's, with its offset
		}
		return dst, errors.New("conflict: not a JSON document")
	}
	if start < 0 {
		return dst, ErrNoValue
	}
	raw := doc[start:end]
	switch raw[0] {
	case '"':
		inner := raw[1 : len(raw)-1]
		if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
			return append(dst, inner...), nil
		}
		var s string // escapes or invalid UTF-8: decoded as encoding/json does
		if err := json.Unmarshal(raw, &s); err != nil {
			return dst, err
		}
		return append(dst, s...), nil
	case '{', '[', 'n':
		return dst, ErrNoValue
	}
	return append(dst, raw...), nil
}

// ScalarTag turns the text of a version field into the strong entity tag
// the proxy shows clients: `7` and `"7"` both become `"7"`. Bytes that an
// entity tag cannot hold (RFC 9110 section 8.8.3: etagc) are %-escaped, the
// same way for responses and request bodies, so the two compare equal.
func ScalarTag(text string) string { return scalarTag(text) }

// ScalarTagOf is ScalarTag of text held in bytes (AppendLookup's).
func ScalarTagOf(text []byte) string { return scalarTag(text) }

func scalarTag[T string | []byte](text T) string {
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
func HashTag(body []byte) string { return HashTagOf(xxhash.Sum64(body)) }

// HashTagOf is HashTag of a body whose xxHash (64 bits) is h: for a body
// hashed piece by piece as it arrives (xxhash.Digest).
func HashTagOf(h uint64) string {
	var buf [18]byte
	buf[0] = '"'
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		buf[1+i] = hex[h&15]
		h >>= 4
	}
	buf[17] = '"'
	return string(buf[:])
}
