package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"unicode/utf8"
)

// The parsed JSON documents of the merge help: a tree that keeps the order
// of object members, so that patches and merged documents read like the
// upstream's own.
//
// Why hand-written: encoding/json decodes objects into maps (member order
// lost, numbers turned into float64, so 12345678901234567890 and 1.10 come
// back changed), and the RFC 7396 libraries (evanphx/json-patch among them)
// work on such maps or re-marshal whole documents per step. A rebased PUT
// is forwarded to the upstream as a document: it must keep the client's
// member order and number literals byte for byte. FuzzMergePatch checks this
// tree's RFC 7396 against evanphx/json-patch as an independent oracle.

// ErrNotJSON is returned for a document that is not valid JSON.
var ErrNotJSON = errors.New("conflict: not a valid JSON document")

// maxDepth bounds the nesting of a parsed document (encoding/json's bound).
const maxDepth = 10000

// A parsed JSON value is one of: nil (null), bool, string, number (the
// literal's text), []any (array), *object.
type number string

// object is a JSON object with its members in document order. For a
// duplicated name the last value wins, at the first name's place (as
// encoding/json decodes it).
type object struct {
	names  []string
	values []any
	index  map[string]int // built for larger objects
}

// smallObject is the size up to which members are found by a linear scan.
const smallObject = 12

func (o *object) get(name string) (any, bool) {
	if o.index != nil {
		i, ok := o.index[name]
		if !ok {
			return nil, false
		}
		return o.values[i], true
	}
	for i, n := range o.names {
		if n == name {
			return o.values[i], true
		}
	}
	return nil, false
}

// set replaces the member name or appends it.
func (o *object) set(name string, v any) {
	if o.index != nil {
		if i, ok := o.index[name]; ok {
			o.values[i] = v
			return
		}
	} else {
		for i, n := range o.names {
			if n == name {
				o.values[i] = v
				return
			}
		}
	}
	o.names = append(o.names, name)
	o.values = append(o.values, v)
	if o.index != nil {
		o.index[name] = len(o.names) - 1
	} else if len(o.names) > smallObject {
		o.index = make(map[string]int, len(o.names)*2)
		for i, n := range o.names {
			o.index[n] = i
		}
	}
}

// remove deletes the member name, keeping the order of the rest.
func (o *object) remove(name string) {
	i := -1
	for j, n := range o.names {
		if n == name {
			i = j
			break
		}
	}
	if i < 0 {
		return
	}
	o.names = append(o.names[:i], o.names[i+1:]...)
	o.values = append(o.values[:i], o.values[i+1:]...)
	if o.index != nil {
		o.index = make(map[string]int, len(o.names)*2)
		for j, n := range o.names {
			o.index[n] = j
		}
	}
}

// ---- parsing ----

type parser struct {
	data  []byte
	pos   int
	depth int
}

// parseJSON parses one JSON text (RFC 8259), surrounded by optional white
// space.
func parseJSON(data []byte) (any, error) {
	p := parser{data: data}
	p.space()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.data) {
		return nil, ErrNotJSON
	}
	return v, nil
}

func (p *parser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value() (any, error) {
	if p.pos >= len(p.data) {
		return nil, ErrNotJSON
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		for _, lit := range [...]struct {
			text string
			v    any
		}{{"true", true}, {"false", false}, {"null", nil}} {
			if bytes.HasPrefix(p.data[p.pos:], []byte(lit.text)) {
				p.pos += len(lit.text)
				return lit.v, nil
			}
		}
		return nil, ErrNotJSON
	}
}

func (p *parser) object() (any, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, ErrNotJSON
	}
	defer func() { p.depth-- }()
	p.pos++ // {
	o := &object{names: make([]string, 0, 8), values: make([]any, 0, 8)}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return o, nil
	}
	for {
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, ErrNotJSON
		}
		name, err := p.str()
		if err != nil {
			return nil, err
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, ErrNotJSON
		}
		p.pos++
		p.space()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		o.set(name, v)
		p.space()
		if p.pos >= len(p.data) {
			return nil, ErrNotJSON
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return o, nil
		default:
			return nil, ErrNotJSON
		}
	}
}

func (p *parser) array() (any, error) {
	if p.depth++; p.depth > maxDepth {
		return nil, ErrNotJSON
	}
	defer func() { p.depth-- }()
	p.pos++ // [
	a := []any{}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return a, nil
	}
	for {
		p.space()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.space()
		if p.pos >= len(p.data) {
			return nil, ErrNotJSON
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return a, nil
		default:
			return nil, ErrNotJSON
		}
	}
}

// str reads a string. Strings without escapes are taken as they are;
// others are decoded by encoding/json (RFC 8259 section 7).
func (p *parser) str() (string, error) {
	start := p.pos
	p.pos++ // "
	escaped, ascii := false, true
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			raw := p.data[start:p.pos]
			if !escaped && (ascii || utf8.Valid(raw)) {
				return string(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", ErrNotJSON
			}
			return s, nil
		case c == '\\':
			escaped = true
			p.pos += 2
		case c < 0x20:
			return "", ErrNotJSON
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			p.pos++
		}
	}
	return "", ErrNotJSON
}

// number reads a number literal: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) number() (any, error) {
	start := p.pos
	d := p.data
	if p.pos < len(d) && d[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(d) && d[p.pos] == '0':
		p.pos++
	case p.pos < len(d) && d[p.pos] >= '1' && d[p.pos] <= '9':
		p.digits()
	default:
		return nil, ErrNotJSON
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if p.digits() == 0 {
			return nil, ErrNotJSON
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if p.digits() == 0 {
			return nil, ErrNotJSON
		}
	}
	return number(d[start:p.pos]), nil
}

func (p *parser) digits() int {
	n := 0
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
		n++
	}
	return n
}

// ---- rendering ----

// appendJSON renders v compactly; strings are escaped as in problem
// documents (appendString).
func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if v {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case string:
		return appendString(b, v)
	case number:
		return append(b, v...)
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	case *object:
		b = append(b, '{')
		for i, n := range v.names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n)
			b = append(b, ':')
			b = appendJSON(b, v.values[i])
		}
		return append(b, '}')
	}
	return b
}

func render(v any) []byte { return appendJSON(nil, v) }

// ---- comparison ----

// equal reports whether two parsed values are the same JSON value: objects
// regardless of member order, numbers by value (1.0 equals 1).
func equal(a, b any) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case bool:
		bb, ok := b.(bool)
		return ok && a == bb
	case string:
		bs, ok := b.(string)
		return ok && a == bs
	case number:
		bn, ok := b.(number)
		return ok && sameNumber(a, bn)
	case []any:
		ba, ok := b.([]any)
		if !ok || len(a) != len(ba) {
			return false
		}
		for i := range a {
			if !equal(a[i], ba[i]) {
				return false
			}
		}
		return true
	case *object:
		bo, ok := b.(*object)
		if !ok || len(a.names) != len(bo.names) {
			return false
		}
		for i, n := range a.names {
			bv, ok := bo.get(n)
			if !ok || !equal(a.values[i], bv) {
				return false
			}
		}
		return true
	}
	return false
}

func sameNumber(a, b number) bool {
	if a == b {
		return true
	}
	x, ok1 := new(big.Rat).SetString(string(a))
	y, ok2 := new(big.Rat).SetString(string(b))
	return ok1 && ok2 && x.Cmp(y) == 0
}
