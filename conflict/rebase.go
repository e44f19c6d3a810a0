package conflict

// The merge help (README "Helping the client merge"): the three-way
// rebase of a stale write, and what a stale-version problem tells about the
// changes since the client's version.

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
		vb, okb := version.find(b)
		vm, okm := version.find(m)
		if okb && (!okm || equal(vb, vm)) {
			if vt, okt := version.find(t); okt {
				// The same value on all three sides: no change to merge, also
				// inside an array (which merges as one value).
				b = version.set(b, vt)
				m = version.set(m, vt)
			} else {
				m = version.set(m, vb)
			}
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
		vb, okb := version.find(b)
		vp, okp := version.find(p)
		vt, okt := version.find(t)
		if okb && okp && okt && equal(vb, vp) {
			p = version.set(p, vt)
			body = render(p)
			mine = removeString(mine, version.String())
			// Their new version is no change the patch could undo, also
			// inside an array (which changes as one value).
			b = version.set(b, vt)
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

// ---- help for a stale write ----

// MergeHelp is what a stale-version problem tells about the changes since
// the client's version (README "Helping the client merge").
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
		if v, ok := version.find(r); ok {
			b = version.set(b, v)
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
