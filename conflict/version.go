// Package conflict holds the HTTP-level logic of caddy-conflict: parsing
// preconditions, comparing versions, deciding on writes and building
// problem documents. It imports nothing from Caddy so that every rule can be
// tested with plain tables.
package conflict

import (
	"strings"
)

// encodingSuffixes are appended to strong ETags by Caddy's encode handler and
// by Apache's mod_deflate when they compress a response. A client that read a
// compressed representation sends the suffixed tag back in If-Match.
var encodingSuffixes = [...]string{"-gzip", "-zstd", "-br"}

// Canonical returns the comparison form of an entity tag or version token:
// the opaque value without "W/", quotes or an encoding suffix. Unquoted legacy
// tokens are accepted as if quoted. Two versions are the same when their
// canonical forms are equal (weak comparison, RFC 9110 section 8.8.3.2,
// widened to ignore the suffixes that compression adds).
func Canonical(tag string) string {
	tag = strings.TrimSpace(tag)
	if strings.HasPrefix(tag, "W/") {
		tag = tag[2:]
	}
	if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' {
		tag = tag[1 : len(tag)-1]
	}
	for _, s := range encodingSuffixes {
		if strings.HasSuffix(tag, s) && len(tag) > len(s) {
			return tag[:len(tag)-len(s)]
		}
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
func ParseTags(values []string) (tags []string, any bool, ok bool) {
	for _, line := range values {
		s := line
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				rest := strings.TrimLeft(s[1:], " \t")
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
			tags = append(tags, tag)
			s = strings.TrimLeft(rest, " \t")
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
