// Package conflict holds the HTTP-level logic of caddy-conflict: parsing
// preconditions, comparing versions, deciding on writes and building
// problem documents. It imports nothing from Caddy so that every rule can be
// tested with plain tables.
package conflict

import (
	"strings"
	"unicode/utf8"
)

// Canonical returns the comparison form of an entity tag or version token:
// the opaque value without "W/", quotes or an encoding suffix. Unquoted legacy
// tokens are accepted as if quoted. Two versions are the same when their
// canonical forms are equal (weak comparison, RFC 9110 section 8.8.3.2,
// widened to ignore the suffixes that compression adds).
func Canonical(tag string) string {
	if n := len(tag); n > 0 && (tag[0] <= ' ' || tag[0] >= utf8.RuneSelf || tag[n-1] <= ' ' || tag[n-1] >= utf8.RuneSelf) {
		tag = strings.TrimSpace(tag)
	}
	if len(tag) >= 2 && tag[0] == 'W' && tag[1] == '/' {
		tag = tag[2:]
	}
	if n := len(tag); n >= 2 && tag[0] == '"' && tag[n-1] == '"' {
		tag = tag[1 : n-1]
	}
	// Caddy's encode handler and Apache's mod_deflate append an encoding
	// suffix to strong ETags when they compress a response, and a client
	// that read a compressed representation sends it back in If-Match. The
	// last byte tells which suffix may be there (this runs for every version
	// compared or stored).
	var suffix string
	if n := len(tag); n > 3 {
		switch tag[n-1] {
		case 'p':
			suffix = "-gzip"
		case 'd':
			suffix = "-zstd"
		case 'r':
			suffix = "-br"
		}
	}
	if suffix != "" && len(tag) > len(suffix) && tag[len(tag)-len(suffix):] == suffix {
		return tag[:len(tag)-len(suffix)]
	}
	return tag
}

// Quote returns a version as it is shown in an ETag header: the upstream's
// own entity tag when it is one, otherwise the token in quotes. Encoding
// suffixes are removed, since they describe a compressed copy, not the
// resource.
func Quote(v string) string {
	v = strings.TrimSpace(v)
	weak := strings.HasPrefix(v, "W/")
	c := Canonical(v)
	if weak {
		return `W/"` + c + `"`
	}
	return `"` + c + `"`
}

// SameVersion reports whether two versions name the same state.
func SameVersion(a, b string) bool {
	return Canonical(a) == Canonical(b)
}

// ParseTags splits the values of one or more If-Match / If-None-Match / ETag
// header lines into entity tags (RFC 9110 section 8.8.3). It returns any=true
// for "*". Unquoted legacy tokens are accepted. ok is false when a value
// cannot be parsed (an unterminated quote, a stray character).
//
// Why not net/http's scanETag or a library: the proxy must also take what
// real clients and servers send that RFC 9110 does not allow (unquoted
// legacy tokens, several header lines, encode's "-gzip" suffixes, see
// Canonical), and tell a malformed header (400) from an absent one; it is
// on every write's path (FuzzParseTags, BenchmarkWritePath).
func ParseTags(values []string) (tags []string, any bool, ok bool) {
	for _, line := range values {
		s := line
		for {
			s = skipSpace(s, true)
			if s == "" {
				break
			}
			if s[0] == '*' {
				rest := skipSpace(s[1:], false)
				if rest != "" && rest[0] != ',' {
					return nil, false, false
				}
				any = true
				s = rest
				continue
			}
			tag, rest, good := scanTag(s)
			if !good {
				return nil, false, false
			}
			if tags == nil {
				tags = make([]string, 0, 1) // usually all there is
			}
			tags = append(tags, tag)
			s = skipSpace(rest, false)
			if s != "" && s[0] != ',' {
				return nil, false, false
			}
		}
	}
	if any && len(tags) > 0 {
		// RFC 9110 section 13.1.1: "*" or a list, not both.
		return nil, false, false
	}
	return tags, any, true
}

// skipSpace drops the spaces and tabs at the start of s, and commas too if
// commas is set (strings.TrimLeft with a cutset, without building the set).
func skipSpace(s string, commas bool) string {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || commas && s[i] == ',') {
		i++
	}
	return s[i:]
}

// scanTag reads one entity tag from the start of s: W/"x", "x" or a legacy
// unquoted token (up to the next comma or space).
func scanTag(s string) (tag, rest string, ok bool) {
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if start < len(s) && s[start] == '"' {
		for i := start + 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '"':
				return s[:i+1], s[i+1:], true
			case c == 0x21 || (c >= 0x23 && c <= 0x7E) || c >= 0x80:
				// etagc, RFC 9110 section 8.8.3
			default:
				return "", "", false
			}
		}
		return "", "", false
	}
	if start != 0 {
		return "", "", false
	}
	end := strings.IndexAny(s, ", \t")
	if end < 0 {
		end = len(s)
	}
	tok := s[:end]
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c <= 0x20 || c == '"' || c == 0x7F {
			return "", "", false
		}
	}
	return tok, s[end:], true
}
