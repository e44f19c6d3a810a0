package conflict

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// This file is the one place RFC 6901 pointers are parsed and resolved:
// Lookup (a `version json` field), ReferenceValues (a `guard reference`
// field) and the merge help (the version field of Echoes and the rebase)
// all step through documents here, so that a pointer names the same value
// for each of them.

// Pointer is a parsed RFC 6901 JSON pointer: its reference tokens, unescaped.
type Pointer []string

// ParsePointer parses an RFC 6901 JSON pointer ("" is the whole document).
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return Pointer{}, nil
	}
	if s[0] != '/' {
		return nil, errors.New("a JSON pointer starts with /")
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		// RFC 6901 section 4: "~1" becomes "/", then "~0" becomes "~".
		for j := 0; j < len(p); j++ {
			if p[j] == '~' && (j+1 >= len(p) || (p[j+1] != '0' && p[j+1] != '1')) {
				return nil, errors.New("a ~ in a JSON pointer must be followed by 0 or 1")
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// String renders the pointer again.
func (p Pointer) String() string {
	var b strings.Builder
	for _, t := range p {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

// escapeToken escapes one reference token (RFC 6901 section 3): "~" as
// "~0", "/" as "~1".
func escapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// arrayIndex reads tok as the index of an element of an array of n elements.
// RFC 6901 section 4: an index is "0" or digits without a leading zero;
// "-" (the element after the last) names nothing that can be read.
func arrayIndex(tok string, n int) (int, bool) {
	if tok == "" || len(tok) > 1 && tok[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i >= n {
		return 0, false
	}
	return i, true
}

// find returns the value at p in a parsed document (parseJSON's tree).
func (p Pointer) find(v any) (any, bool) {
	for _, tok := range p {
		switch c := v.(type) {
		case *object:
			next, ok := c.get(tok)
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, ok := arrayIndex(tok, len(c))
			if !ok {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// findRaw is find for a document that is not parsed into a tree: raw is
// valid JSON, and only the containers on the way to p are decoded (a
// version field is read from every response; parsing all of it would cost
// allocations for every value). ok is false when p names nothing.
func (p Pointer) findRaw(raw json.RawMessage) (_ json.RawMessage, ok bool, err error) {
	for _, tok := range p {
		if len(raw) == 0 {
			return nil, false, nil
		}
		switch raw[0] {
		case '{':
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, false, err
			}
			if raw, ok = obj[tok]; !ok {
				return nil, false, nil
			}
		case '[':
			var arr []json.RawMessage
			if err := json.Unmarshal(raw, &arr); err != nil {
				return nil, false, err
			}
			i, ok := arrayIndex(tok, len(arr))
			if !ok {
				return nil, false, nil
			}
			raw = arr[i]
		default:
			return nil, false, nil
		}
	}
	return raw, true, nil
}

// set puts val at p in the parsed document root and returns the document,
// changed in place. Objects missing (or null) on the way are created; an
// array is stepped into only at an element it has (arrayIndex: "-" appends
// nothing); a scalar on the way leaves the document as it was.
func (p Pointer) set(root, val any) any {
	if len(p) == 0 {
		return val
	}
	switch c := root.(type) {
	case *object:
		cur, _ := c.get(p[0])
		if cur, ok := container(cur, len(p) > 1); ok {
			c.set(p[0], p[1:].set(cur, val))
		}
	case []any:
		i, ok := arrayIndex(p[0], len(c))
		if !ok {
			return root
		}
		if cur, ok := container(c[i], len(p) > 1); ok {
			c[i] = p[1:].set(cur, val)
		}
	}
	return root
}

// container returns what set steps into: v itself when nothing is left to
// step through (more is false) or v is an object or array; a new object for
// a null or missing v; ok is false for a scalar.
func container(v any, more bool) (any, bool) {
	if !more {
		return v, true
	}
	switch v.(type) {
	case *object, []any:
		return v, true
	case nil:
		return &object{}, true
	}
	return nil, false
}
