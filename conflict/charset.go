package conflict

import (
	"bytes"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/unicode"
)

// toUTF8 transcodes body to valid UTF-8 as the WHATWG Encoding Standard
// decodes (section 6, "decode"): a byte order mark decides the encoding and
// is removed; else the charset label, any WHATWG label ("latin1" and
// "us-ascii" are windows-1252, "utf-16" is little-endian); else UTF-8.
// Bytes that do not decode become U+FFFD.
func toUTF8(body []byte, charset string) []byte {
	var enc encoding.Encoding
	switch {
	case bytes.HasPrefix(body, []byte{0xEF, 0xBB, 0xBF}):
		body = body[3:]
	case bytes.HasPrefix(body, []byte{0xFE, 0xFF}):
		body, enc = body[2:], unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM)
	case bytes.HasPrefix(body, []byte{0xFF, 0xFE}):
		body, enc = body[2:], unicode.UTF16(unicode.LittleEndian, unicode.IgnoreBOM)
	case charset != "" && charset != "utf-8":
		enc, _ = htmlindex.Get(charset) // an unknown label is read as UTF-8
	}
	_, singleByte := enc.(*charmap.Charmap)
	switch {
	case enc == nil || enc == unicode.UTF8:
	case (singleByte || enc == charmap.ISO8859_8I) && utf8.Valid(body):
		// Valid UTF-8 labelled with a one-byte charset is a misconfigured
		// server (a default charset), not legacy text: that rarely forms
		// UTF-8 sequences.
	default:
		if out, err := enc.NewDecoder().Bytes(body); err == nil && utf8.Valid(out) {
			return out
		}
	}
	if utf8.Valid(body) {
		return body
	}
	return bytes.ToValidUTF8(body, []byte("\uFFFD"))
}
