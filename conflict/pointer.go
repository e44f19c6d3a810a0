package conflict

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is the one place RFC 6901 pointers are parsed and resolved:
// Lookup (a `version json` field), ReferenceValues (a `guard reference`
// field) and the merge help (the version field of Echoes and the rebase)
// all step through documents here, so that a pointer names the same value
// for each of them: find in parsed trees, resolve in raw bytes (one pass,
// nothing decoded: Lookup runs on every response in `version json`).

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

// maxNestingDepth is encoding/json's limit: a document nested deeper is
// not valid JSON to json.Valid, so not to resolve either.
const maxNestingDepth = 10000

// resolve finds the value at p in the JSON document doc in one pass over
// doc, without decoding or building anything, and checks on the way that
// all of doc is valid JSON as json.Valid has it (so garbage after the value
// is rejected too: a truncated or concatenated body gives no version, as
// before). start is the offset of the value at p and end the offset after
// it; start < 0 when p names nothing. valid is false for a document that
// is not JSON, whatever p names.
//
// It names what encoding/json's decoding names: a duplicated member's last
// occurrence, member names compared once unescaped (and with invalid UTF-8
// replaced), array elements at RFC 6901 indexes (arrayIndex).
func (p Pointer) resolve(doc []byte) (start, end int, valid bool) {
	s := scan{doc: doc, p: p, start: -1}
	i := s.pathValue(jsonSpace(doc, 0), 0, 0)
	if i < 0 || jsonSpace(doc, i) != len(doc) {
		return -1, -1, false
	}
	return s.start, s.end, true
}

// scan is the state of one resolve. The path's containers are walked by
// pathValue, pathObject and pathArray, one call per level of p; every
// other value is skipped, and checked, by skip without recursion.
type scan struct {
	doc        []byte
	p          Pointer
	start, end int
	// open containers of the current skip, one bit each: 1 an object.
	stack [maxNestingDepth/64 + 1]uint64
}

// pathValue reads the value at doc[i] that p[:l] names, inside d open
// containers, and returns the offset after it (-1: not JSON). A later
// duplicate of a member on the path names the value again, so what an
// earlier one found is forgotten first.
func (s *scan) pathValue(i, l, d int) int {
	if l == len(s.p) {
		s.start = i
		s.end = s.skip(i, d)
		return s.end
	}
	s.start = -1
	if i < len(s.doc) {
		switch s.doc[i] {
		case '{':
			return s.pathObject(i, l, d)
		case '[':
			return s.pathArray(i, l, d)
		}
	}
	return s.skip(i, d) // a scalar on the way: nothing at p
}

func (s *scan) pathObject(i, l, d int) int {
	doc, tok := s.doc, s.p[l]
	if d >= maxNestingDepth {
		return -1
	}
	i = jsonSpace(doc, i+1)
	if i < len(doc) && doc[i] == '}' {
		return i + 1
	}
	for {
		k := i
		if i = skipString(doc, i); i < 0 {
			return -1
		}
		name := doc[k:i]
		if i = jsonSpace(doc, i); i >= len(doc) || doc[i] != ':' {
			return -1
		}
		i = jsonSpace(doc, i+1)
		if nameIs(name, tok) {
			i = s.pathValue(i, l+1, d+1)
		} else {
			i = s.skip(i, d+1)
		}
		var done bool
		if i, done = afterElement(doc, i, '}'); done {
			return i
		}
	}
}

func (s *scan) pathArray(i, l, d int) int {
	doc := s.doc
	if d >= maxNestingDepth {
		return -1
	}
	want, ok := arrayIndex(s.p[l], math.MaxInt)
	if !ok {
		want = -1
	}
	i = jsonSpace(doc, i+1)
	if i < len(doc) && doc[i] == ']' {
		return i + 1
	}
	for n := 0; ; n++ {
		if n == want {
			i = s.pathValue(i, l+1, d+1)
		} else {
			i = s.skip(i, d+1)
		}
		var done bool
		if i, done = afterElement(doc, i, ']'); done {
			return i
		}
	}
}

// afterElement reads what follows an element of a container on the path,
// which ended at doc[i] (i < 0: it was not JSON): the container's close,
// done with the offset after it, or a comma, with the next element's
// offset; anything else is done with -1.
func afterElement(doc []byte, i int, close byte) (int, bool) {
	if i < 0 {
		return -1, true
	}
	if i = jsonSpace(doc, i); i >= len(doc) {
		return -1, true
	}
	switch doc[i] {
	case close:
		return i + 1, true
	case ',':
		return jsonSpace(doc, i+1), false
	}
	return -1, true
}

// nameIs reports whether the member name name (quoted, as in the
// document) is tok once unescaped, as encoding/json decodes a map key.
func nameIs(name []byte, tok string) bool {
	raw := name[1 : len(name)-1]
	plain := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain || bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw) == tok
	}
	var decoded string // escapes or invalid UTF-8: rare, let encoding/json say
	return json.Unmarshal(name, &decoded) == nil && decoded == tok
}

// skip checks the value at doc[i], inside d open containers, and returns
// the offset after it, or -1 if it is not JSON.
func (s *scan) skip(i, d int) int {
	doc := s.doc
	if i >= len(doc) {
		return -1
	}
	switch doc[i] {
	case '{', '[':
		return s.skipContainer(i, d)
	case '"':
		return skipString(doc, i)
	}
	return skipScalar(doc, i)
}

// skipScalar skips the literal or number at doc[i] (RFC 8259 sections 3
// and 6); -1 if there is none.
func skipScalar(doc []byte, i int) int {
	switch doc[i] {
	case 't':
		return skipLiteral(doc, i, "true")
	case 'f':
		return skipLiteral(doc, i, "false")
	case 'n':
		return skipLiteral(doc, i, "null")
	}
	return skipNumber(doc, i)
}

// skipContainer is skip for an object or an array, iterative: the kind of
// each open container is a bit of s.stack. Compact JSON's short names,
// short strings and integers, most of what documents hold, are stepped
// over here without a call; the rest by the skip functions.
func (s *scan) skipContainer(i, d int) int {
	doc := s.doc
	limit := maxNestingDepth - d
	n := 0                // containers open
	object := false       // the innermost one is an object
	blocks := math.MaxInt // where to go on by blocks (skipBlocks)
	if blockAfter < len(doc)-i {
		blocks = i + blockAfter
	}
	for {
		// doc[i] is the first byte of a value (i < len(doc)).
		if i >= blocks {
			return s.skipBlocks(i, n, object, limit) // a large container: by blocks
		}
		switch c := doc[i]; {
		case c == '"':
			if i+9 <= len(doc) {
				m := specialBytes(binary.LittleEndian.Uint64(doc[i+1:]))
				if j := i + 1 + bits.TrailingZeros64(m)>>3; m != 0 && doc[j] == '"' {
					i = j + 1
					break
				}
			}
			i = skipString(doc, i)
		case '1' <= c && c <= '9':
			j := i + 1
			for j < len(doc) && '0' <= doc[j] && doc[j] <= '9' {
				j++
			}
			if j < len(doc) && (doc[j] == ',' || doc[j] == '}' || doc[j] == ']') {
				i = j
			} else {
				i = skipNumber(doc, i)
			}
		case c == '{' || c == '[':
			if n == limit {
				return -1
			}
			object = c == '{'
			if object {
				s.stack[n>>6] |= 1 << (n & 63)
			} else {
				s.stack[n>>6] &^= 1 << (n & 63)
			}
			n++
			if i = jsonSpace(doc, i+1); i >= len(doc) {
				return -1
			}
			if doc[i] == c+2 { // empty: '}' is '{'+2, ']' is '['+2; closed below
				break
			}
			if object {
				if i+9 <= len(doc) && doc[i] == '"' { // a short name, as after a comma below
					m := specialBytes(binary.LittleEndian.Uint64(doc[i+1:]))
					if j := i + 1 + bits.TrailingZeros64(m)>>3; m != 0 && j+2 < len(doc) && doc[j] == '"' && doc[j+1] == ':' && doc[j+2] > ' ' {
						i = j + 2
						continue
					}
				}
				if i = skipMember(doc, i); i < 0 {
					return -1
				}
			}
			continue
		case c == 't':
			i = skipLiteral(doc, i, "true")
		case c == 'f':
			i = skipLiteral(doc, i, "false")
		case c == 'n':
			i = skipLiteral(doc, i, "null")
		default:
			i = skipNumber(doc, i)
		}
		// After a value: a comma and the next one, or the ends of containers.
		for {
			if i < 0 {
				return -1
			}
			if i = jsonSpace(doc, i); i >= len(doc) {
				return -1
			}
			c := doc[i]
			if c == ',' {
				i++
				if !object {
					if i = jsonSpace(doc, i); i >= len(doc) {
						return -1
					}
					break
				}
				// A short name, its colon and a value right after it.
				if i+9 <= len(doc) && doc[i] == '"' {
					m := specialBytes(binary.LittleEndian.Uint64(doc[i+1:]))
					if j := i + 1 + bits.TrailingZeros64(m)>>3; m != 0 && j+2 < len(doc) && doc[j] == '"' && doc[j+1] == ':' && doc[j+2] > ' ' {
						i = j + 2
						break
					}
				}
				if i = skipMember(doc, jsonSpace(doc, i)); i < 0 {
					return -1
				}
				break
			}
			if object && c == '}' || !object && c == ']' {
				i++
				if n--; n == 0 {
					return i
				}
				object = s.stack[(n-1)>>6]>>((n-1)&63)&1 == 1
				continue
			}
			return -1
		}
	}
}

// skipMember skips a member name and its colon: i is then at the member's
// value, within doc (or -1: not JSON).
func skipMember(doc []byte, i int) int {
	if i = skipName(doc, i); i >= len(doc) {
		return -1
	}
	return i
}

// skipName skips a member name, its colon and the space after it: i is
// then at the member's value (or -1: not JSON).
func skipName(doc []byte, i int) int {
	if i = skipString(doc, i); i < 0 {
		return -1
	}
	if i < len(doc) && doc[i] == ':' { // compact JSON
		return jsonSpace(doc, i+1)
	}
	if i = jsonSpace(doc, i); i >= len(doc) || doc[i] != ':' {
		return -1
	}
	return jsonSpace(doc, i+1)
}

// plainByte marks the bytes a JSON string holds as they are: not the
// quote, the backslash or a control character (RFC 8259 section 7).
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// specialBytes marks, with its high bit, the first byte of the 8 in x
// (little-endian) that is not plainByte, and maybe bytes after it; 0 if
// there is none. (A borrow can only mark bytes above a marked one.)
func specialBytes(x uint64) uint64 {
	q := x ^ ('"' * ones)
	b := x ^ ('\\' * ones)
	return ((q-ones)&^q | (b-ones)&^b | (x-0x20*ones)&^x) & highs
}

// skipString skips the string at doc[i] (-1 if there is none). As for
// json.Valid, any bytes but control characters may stand in it, valid
// UTF-8 or not. Plain bytes are stepped over 8 at a time.
func skipString(doc []byte, i int) int {
	if i >= len(doc) || doc[i] != '"' {
		return -1
	}
	i++
	for {
		for i+8 <= len(doc) {
			if m := specialBytes(binary.LittleEndian.Uint64(doc[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(doc) && plainByte[doc[i]] {
			i++
		}
		if i >= len(doc) {
			return -1
		}
		switch doc[i] {
		case '"':
			return i + 1
		case '\\':
			n := escapeLen(doc, i+1)
			if n == 0 {
				return -1
			}
			i += 1 + n
		default:
			return -1 // a control character
		}
	}
}

// escapeLen is the length of the escape at doc[i], after its backslash
// (RFC 8259 section 7): 1, 5 for \uXXXX, 0 if there is none.
func escapeLen(doc []byte, i int) int {
	if i >= len(doc) {
		return 0
	}
	switch doc[i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 1
	case 'u':
		if i+5 <= len(doc) && isHex(doc[i+1]) && isHex(doc[i+2]) && isHex(doc[i+3]) && isHex(doc[i+4]) {
			return 5
		}
	}
	return 0
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// skipNumber skips the number at doc[i] (RFC 8259 section 6); -1 if there
// is none.
func skipNumber(doc []byte, i int) int {
	if i < len(doc) && doc[i] == '-' {
		i++
	}
	switch {
	case i >= len(doc):
		return -1
	case doc[i] == '0':
		i++
	case '1' <= doc[i] && doc[i] <= '9':
		i = skipDigits(doc, i+1)
	default:
		return -1
	}
	if i < len(doc) && doc[i] == '.' {
		j := skipDigits(doc, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(doc) && (doc[i] == 'e' || doc[i] == 'E') {
		i++
		if i < len(doc) && (doc[i] == '+' || doc[i] == '-') {
			i++
		}
		j := skipDigits(doc, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(doc []byte, i int) int {
	for i < len(doc) && '0' <= doc[i] && doc[i] <= '9' {
		i++
	}
	return i
}

func skipLiteral(doc []byte, i int, lit string) int {
	if len(doc)-i < len(lit) || string(doc[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// jsonSpace skips JSON's white space (RFC 8259 section 2).
func jsonSpace(doc []byte, i int) int {
	if i < len(doc) && doc[i] > ' ' {
		return i // compact JSON
	}
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\n' || doc[i] == '\r' || doc[i] == '\t') {
		i++
	}
	return i
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
