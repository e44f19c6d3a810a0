package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"unicode/utf8"
)

// This file is the merge help of the SPEC ("Helping the client merge"):
// RFC 7396 merge patches between two representations, the RFC 6901 paths
// they change, and the three-way rebase of a stale write. Arrays are values
// (a change anywhere in an array is a change of the array), as RFC 7396
// treats them. Documents are parsed into a tree that keeps the order of
// object members, so that patches and merged documents read like the
// upstream's own.

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

// ---- merge patches (RFC 7396) ----

// Diff returns the RFC 7396 merge patch that turns the document from into
// the document to: for two objects, the members to add, replace (nested
// objects as patches of their own) and remove (null); otherwise to itself.
// A member whose new value is null cannot be told from a removal in a merge
// patch (RFC 7396 section 1): it is shown as null, which Apply removes.
func Diff(from, to []byte) ([]byte, error) {
	f, err := parseJSON(from)
	if err != nil {
		return nil, err
	}
	t, err := parseJSON(to)
	if err != nil {
		return nil, err
	}
	return render(diff(f, t)), nil
}

func diff(from, to any) any {
	fo, ok1 := from.(*object)
	to2, ok2 := to.(*object)
	if !ok1 || !ok2 {
		return to
	}
	patch := &object{}
	for i, n := range to2.names {
		tv := to2.values[i]
		fv, ok := fo.get(n)
		switch {
		case !ok:
			patch.set(n, tv)
		case !equal(fv, tv):
			patch.set(n, diff(fv, tv))
		}
	}
	for _, n := range fo.names {
		if _, ok := to2.get(n); !ok {
			patch.set(n, nil)
		}
	}
	return patch
}

// Apply applies the RFC 7396 merge patch to the document target (section
// 2): a patch that is an object is merged member by member, null removing
// a member; any other patch replaces the target.
func Apply(target, patch []byte) ([]byte, error) {
	t, err := parseJSON(target)
	if err != nil {
		return nil, err
	}
	p, err := parseJSON(patch)
	if err != nil {
		return nil, err
	}
	return render(apply(t, p)), nil
}

// apply may modify target in place.
func apply(target, patch any) any {
	po, ok := patch.(*object)
	if !ok {
		return patch
	}
	to, ok := target.(*object)
	if !ok {
		to = &object{}
	}
	for i, n := range po.names {
		pv := po.values[i]
		if pv == nil {
			to.remove(n)
			continue
		}
		cur, _ := to.get(n)
		to.set(n, apply(cur, pv))
	}
	return to
}

// ---- changed paths (RFC 6901) ----

// ChangedPaths lists, as RFC 6901 pointers, the places where the documents
// from and to differ: members added, removed or changed, nested objects
// followed down, anything else (arrays included) compared as a value. The
// whole document is "". Members appear in to's order, removals last.
func ChangedPaths(from, to []byte) ([]string, error) {
	f, err := parseJSON(from)
	if err != nil {
		return nil, err
	}
	t, err := parseJSON(to)
	if err != nil {
		return nil, err
	}
	return changedPaths("", f, t, nil), nil
}

func changedPaths(prefix string, from, to any, out []string) []string {
	fo, ok1 := from.(*object)
	to2, ok2 := to.(*object)
	if !ok1 || !ok2 {
		if !equal(from, to) {
			out = append(out, prefix)
		}
		return out
	}
	for i, n := range to2.names {
		fv, ok := fo.get(n)
		switch {
		case !ok:
			out = append(out, prefix+"/"+escapeToken(n))
		case !equal(fv, to2.values[i]):
			out = changedPaths(prefix+"/"+escapeToken(n), fv, to2.values[i], out)
		}
	}
	for _, n := range fo.names {
		if _, ok := to2.get(n); !ok {
			out = append(out, prefix+"/"+escapeToken(n))
		}
	}
	return out
}

// patchPaths lists the places a merge patch writes when applied to base:
// every member it sets or removes (even to the value base already has,
// since the patch is replayed on another state), nested patches followed
// down where base has an object, and "" for a patch that replaces the
// document.
func patchPaths(prefix string, base, patch any, out []string) []string {
	po, ok := patch.(*object)
	if !ok {
		return append(out, prefix)
	}
	bo, ok := base.(*object)
	if !ok {
		return append(out, prefix) // the target is replaced by an object
	}
	for i, n := range po.names {
		p := prefix + "/" + escapeToken(n)
		pv := po.values[i]
		if _, isObj := pv.(*object); isObj {
			bv, _ := bo.get(n)
			if _, baseObj := bv.(*object); baseObj {
				out = patchPaths(p, bv, pv, out)
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

func escapeToken(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Overlap returns the paths of mine that meet a path of theirs: the same
// place, or one inside the other. Each meeting is named by the shorter of
// the two paths (the field both sides changed), once, in mine's order.
func Overlap(mine, theirs []string) []string {
	if len(mine) == 0 || len(theirs) == 0 {
		return nil
	}
	changed := make(map[string]bool, len(theirs))
	inside := make(map[string]bool) // proper ancestors of theirs' paths
	for _, t := range theirs {
		changed[t] = true
		for p := t; p != ""; {
			p = p[:strings.LastIndexByte(p, '/')]
			if inside[p] {
				break
			}
			inside[p] = true
		}
	}
	var out []string
	seen := make(map[string]bool)
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, m := range mine {
		// An ancestor of m (or m itself) that theirs changed.
		hit := false
		for p := m; ; p = p[:strings.LastIndexByte(p, '/')] {
			if changed[p] {
				hit = true
				add(p)
				break
			}
			if p == "" {
				break
			}
		}
		if !hit && inside[m] {
			add(m) // theirs changed something inside m
		}
	}
	return out
}

// ---- rebase ----

// Rebase is the outcome of replaying a stale write onto the current state.
type Rebase struct {
	// Conflicts lists (RFC 6901) the places both the write and the changes
	// since its base touched; when it is empty the write was rebased.
	Conflicts []string
	// Body is the request body to forward: the merged document for a
	// document write, the client's patch for a merge patch (with the
	// version field moved, if any).
	Body []byte
	// Merged is the document the upstream holds once Body is applied.
	Merged []byte
}

// RebaseDocument rebases a whole-document write (PUT) made from base onto
// theirs: the members mine changed relative to base are applied to theirs.
// It fails (Conflicts) when mine and theirs changed the same place. A value
// at version (the `version json` field; nil if none) that mine left as it
// was in base, or left out, is the precondition, not content: it takes
// theirs' value and never conflicts.
func RebaseDocument(base, theirs, mine []byte, version Pointer) (Rebase, error) {
	b, t, m, err := parse3(base, theirs, mine)
	if err != nil {
		return Rebase{}, err
	}
	if version != nil {
		vb, okb := lookupTree(b, version)
		vm, okm := lookupTree(m, version)
		if okb && (!okm || equal(vb, vm)) {
			m = setTree(m, version, vb)
		}
	}
	var conflicts []string
	merged := merge3("", b, t, m, &conflicts)
	if len(conflicts) > 0 {
		return Rebase{Conflicts: conflicts}, nil
	}
	doc := render(merged)
	return Rebase{Body: doc, Merged: doc}, nil
}

// RebasePatch rebases an RFC 7396 merge patch made from base onto theirs:
// the patch is forwarded as it is, so it must not touch a place theirs
// changed since base. A value at version (the `version json` field) that
// the patch sets to base's value is the precondition: it is set to theirs'
// value and never conflicts.
func RebasePatch(base, theirs, patch []byte, version Pointer) (Rebase, error) {
	b, t, p, err := parse3(base, theirs, patch)
	if err != nil {
		return Rebase{}, err
	}
	body := patch
	mine := patchPaths("", b, p, nil)
	if version != nil {
		vb, okb := lookupTree(b, version)
		vp, okp := lookupTree(p, version)
		vt, okt := lookupTree(t, version)
		if okb && okp && okt && equal(vb, vp) {
			p = setTree(p, version, vt)
			body = render(p)
			vs := version.String()
			mine = removeString(mine, vs)
		}
	}
	if c := Overlap(mine, changedPaths("", b, t, nil)); len(c) > 0 {
		return Rebase{Conflicts: c}, nil
	}
	return Rebase{Body: body, Merged: render(apply(t, p))}, nil
}

func parse3(a, b, c []byte) (x, y, z any, err error) {
	if x, err = parseJSON(a); err != nil {
		return
	}
	if y, err = parseJSON(b); err != nil {
		return
	}
	z, err = parseJSON(c)
	return
}

func removeString(list []string, s string) []string {
	out := list[:0]
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// absent stands for a member an object does not have.
type absentValue struct{}

var absent any = absentValue{}

func member(o *object, name string) any {
	if v, ok := o.get(name); ok {
		return v
	}
	return absent
}

func same(a, b any) bool {
	_, aa := a.(absentValue)
	_, ba := b.(absentValue)
	if aa || ba {
		return aa && ba
	}
	return equal(a, b)
}

// merge3 is the three-way merge of mine and theirs, both made from base:
// a place only one side changed takes that side's value; objects all three
// have are merged member by member; a place both changed is a conflict
// (even to the same value: the client never saw the other change).
func merge3(path string, b, t, m any, conflicts *[]string) any {
	if same(m, b) {
		return t
	}
	if same(t, b) {
		return m
	}
	bo, ok1 := b.(*object)
	to, ok2 := t.(*object)
	mo, ok3 := m.(*object)
	if !ok1 || !ok2 || !ok3 {
		*conflicts = append(*conflicts, path)
		return t
	}
	out := &object{}
	put := func(n string) {
		if _, done := out.get(n); done {
			return
		}
		v := merge3(path+"/"+escapeToken(n), member(bo, n), member(to, n), member(mo, n), conflicts)
		if _, gone := v.(absentValue); !gone {
			out.set(n, v)
		}
	}
	for _, n := range to.names {
		put(n)
	}
	for _, n := range mo.names {
		put(n)
	}
	for _, n := range bo.names {
		if _, inT := to.get(n); inT {
			continue
		}
		if _, inM := mo.get(n); inM {
			continue
		}
		// Removed on both sides.
		*conflicts = append(*conflicts, path+"/"+escapeToken(n))
	}
	return out
}

// lookupTree finds the value at p in a parsed document (objects only, which
// is where a version field lives).
func lookupTree(v any, p Pointer) (any, bool) {
	for _, tok := range p {
		o, ok := v.(*object)
		if !ok {
			return nil, false
		}
		if v, ok = o.get(tok); !ok {
			return nil, false
		}
	}
	return v, true
}

// setTree sets the value at p, creating the objects on the way; a
// non-object on the way is left alone.
func setTree(root any, p Pointer, val any) any {
	if len(p) == 0 {
		return val
	}
	o, ok := root.(*object)
	if !ok {
		return root
	}
	cur, _ := o.get(p[0])
	if len(p) > 1 {
		if _, isObj := cur.(*object); !isObj {
			if cur != nil {
				return root
			}
			cur = &object{}
		}
	}
	o.set(p[0], setTree(cur, p[1:], val))
	return root
}

// ---- help for a stale write ----

// MergeHelp is what a stale-version problem tells about the changes since
// the client's version (SPEC "Helping the client merge").
type MergeHelp struct {
	// Changes is the RFC 7396 merge patch from the client's version to the
	// current one.
	Changes []byte
	// ChangedPaths lists the places it changes (RFC 6901).
	ChangedPaths []string
}

// Explain compares the representation of the client's version with the
// current one.
func Explain(claimed, current []byte) (MergeHelp, error) {
	f, err := parseJSON(claimed)
	if err != nil {
		return MergeHelp{}, err
	}
	t, err := parseJSON(current)
	if err != nil {
		return MergeHelp{}, err
	}
	paths := changedPaths("", f, t, nil)
	if paths == nil {
		paths = []string{}
	}
	return MergeHelp{Changes: render(diff(f, t)), ChangedPaths: paths}, nil
}

// IsDocument reports whether data is a JSON text this package can merge.
func IsDocument(data []byte) bool {
	_, err := parseJSON(data)
	return err == nil
}

// Echoes reports whether the document resp already holds what the write
// body set: applying body (a merge patch, or a whole document taken as
// one) to resp changes nothing, except at version. A write response that
// echoes the write is taken as the new representation; a status body such
// as CouchDB's {"ok":true,"rev":...} is not.
func Echoes(resp, body []byte, version Pointer) bool {
	r, err := parseJSON(resp)
	if err != nil {
		return false
	}
	b, err := parseJSON(body)
	if err != nil {
		return false
	}
	if _, ok := r.(*object); !ok {
		return false
	}
	if version != nil {
		if v, ok := lookupTree(r, version); ok {
			b = setTree(b, version, v)
		}
	}
	return holds(r, b)
}

// holds reports whether applying patch to doc would leave it unchanged.
func holds(doc, patch any) bool {
	po, ok := patch.(*object)
	if !ok {
		return equal(doc, patch)
	}
	do, ok := doc.(*object)
	if !ok {
		return false
	}
	for i, n := range po.names {
		dv, present := do.get(n)
		pv := po.values[i]
		if pv == nil {
			if present && dv != nil {
				return false
			}
			continue
		}
		if !present || !holds(dv, pv) {
			return false
		}
	}
	return true
}
