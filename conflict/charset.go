package conflict

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// windows1252 maps the bytes 0x80-0x9F; the other bytes of ISO-8859-1 are
// their own code points. The WHATWG Encoding Standard reads "iso-8859-1"
// and "us-ascii" labels as windows-1252, as browsers do.
var windows1252 = [32]rune{
	'\u20AC', '\u0081', '\u201A', '\u0192', '\u201E', '\u2026', '\u2020', '\u2021',
	'\u02C6', '\u2030', '\u0160', '\u2039', '\u0152', '\u008D', '\u017D', '\u008F',
	'\u0090', '\u2018', '\u2019', '\u201C', '\u201D', '\u2022', '\u2013', '\u2014',
	'\u02DC', '\u2122', '\u0161', '\u203A', '\u0153', '\u009D', '\u017E', '\u0178',
}

func isLatin1(charset string) bool {
	switch charset {
	case "iso-8859-1", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "iso-ir-100",
		"latin1", "l1", "cp819", "ibm819", "csisolatin1", "windows-1252", "cp1252", "x-cp1252",
		"us-ascii", "ascii", "ansi_x3.4-1968":
		return true
	}
	return false
}

// toUTF8 transcodes body to valid UTF-8: Latin-1/windows-1252 and UTF-16
// are decoded, anything else is read as UTF-8 with invalid bytes replaced
// by U+FFFD. A byte order mark is removed.
func toUTF8(body []byte, charset string) []byte {
	switch {
	case bytes.HasPrefix(body, []byte{0xEF, 0xBB, 0xBF}):
		body = body[3:]
	case bytes.HasPrefix(body, []byte{0xFE, 0xFF}):
		return fromUTF16(body[2:], false)
	case bytes.HasPrefix(body, []byte{0xFF, 0xFE}):
		return fromUTF16(body[2:], true)
	case charset == "utf-16" || charset == "utf-16be":
		return fromUTF16(body, false)
	case charset == "utf-16le":
		return fromUTF16(body, true)
	case isLatin1(charset) && !utf8.Valid(body):
		// Valid UTF-8 labelled Latin-1 is a misconfigured server (a default
		// charset), not Latin-1 text: that rarely forms UTF-8 sequences.
		return fromWindows1252(body)
	}
	if utf8.Valid(body) {
		return body
	}
	return bytes.ToValidUTF8(body, []byte("\uFFFD"))
}

func fromWindows1252(body []byte) []byte {
	n := 0
	for _, c := range body {
		if c >= 0x80 {
			n++
		}
	}
	if n == 0 {
		return body
	}
	out := make([]byte, 0, len(body)+2*n)
	for _, c := range body {
		switch {
		case c < 0x80:
			out = append(out, c)
		case c < 0xA0:
			out = utf8.AppendRune(out, windows1252[c-0x80])
		default:
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return out
}

func fromUTF16(body []byte, little bool) []byte {
	units := make([]uint16, len(body)/2)
	for i := range units {
		if little {
			units[i] = uint16(body[2*i]) | uint16(body[2*i+1])<<8
		} else {
			units[i] = uint16(body[2*i])<<8 | uint16(body[2*i+1])
		}
	}
	out := make([]byte, 0, len(units))
	for _, r := range utf16.Decode(units) {
		out = utf8.AppendRune(out, r)
	}
	return out
}
