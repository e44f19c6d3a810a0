package conflict

import (
	"strings"
)

// RFC 7396 merge patches between two representations and the RFC 6901
// paths they change. Arrays are values (a change anywhere in an array is a
// change of the array), as RFC 7396 treats them.

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
