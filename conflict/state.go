package conflict

import (
	"net/http"
	"slices"
)

// MaxSuperseded bounds the list of superseded versions kept per key.
const MaxSuperseded = 8

// MaxVariants bounds the variants whose versions are kept per key. A read
// of one more variant makes the current version unknown (the safe side: a
// write is then forwarded) instead of growing the list.
const MaxVariants = 8

// State is what the proxy knows about one resource. A State value is never
// changed in place once stored: every transition returns a new one.
type State struct {
	// Version is the current version as the upstream sent it ("" = unknown).
	Version string `json:"version,omitempty"`
	// Superseded holds canonical forms (see Canonical) of versions known not
	// to be current any more, newest first, at most MaxSuperseded.
	Superseded []string `json:"superseded,omitempty"`
	// Deleted is the tombstone: the resource is known not to exist.
	Deleted bool `json:"deleted,omitempty"`
	// Uncertain means a write's outcome was never seen: the next write must
	// re-read the version from the upstream before it is decided.
	Uncertain bool `json:"uncertain,omitempty"`
	// Live means the resource was seen to exist (a 2xx read, a 2xx write
	// other than DELETE) and not seen deleted since; `guard children`
	// counts only live descendants.
	Live bool `json:"live,omitempty"`
	// Variants holds, for a negotiated resource (a Vary naming request
	// headers beyond Accept-Encoding and Origin), the current version of
	// each variant read since the last write, at most MaxVariants, in the
	// order they were first learned. Version is then the first one's.
	// Empty for a resource served in one representation.
	Variants []Variant `json:"variants,omitempty"`
}

// Variant is the current version of one variant of a negotiated resource.
type Variant struct {
	// ID names the variant: a hash of the request header values its Vary
	// names (see VariantVersion); "" for a version learned without one
	// (a write's response, a re-read), which only a write replaces.
	ID string `json:"id,omitempty"`
	// Version is the variant's version as the upstream sent it.
	Version string `json:"version"`
}

// Known reports whether the current version is known.
func (s State) Known() bool { return s.Version != "" }

// IsLive reports whether the resource may be counted as existing: it was
// seen to exist, not deleted since, and no write's outcome is pending.
func (s State) IsLive() bool { return s.Live && !s.Deleted && !s.Uncertain }

// IsGone reports whether the resource is known not to exist: a tombstone,
// and no write's outcome is pending.
func (s State) IsGone() bool { return s.Deleted && !s.Uncertain }

// IsSuperseded reports whether v is one of the superseded versions.
func (s State) IsSuperseded(v string) bool {
	return slices.Contains(s.Superseded, Canonical(v))
}

// variantMark starts a version qualified with its variant (VariantVersion):
// a NUL, which no header value holds.
const variantMark = "\x00variant\x00"

// VariantVersion is the version v of the variant named id, qualified so that
// Observed (and a store's Observe, which calls it) replaces only that
// variant's version. id is a short, printable digest of the request header
// values the response's Vary names; v may be "" (the variant carried no
// version).
func VariantVersion(id, v string) string {
	return variantMark + id + "\x00" + v
}

// splitVariant undoes VariantVersion; ok is false for a plain version.
func splitVariant(q string) (id, v string, ok bool) {
	if len(q) < len(variantMark) || q[0] != 0 || q[:len(variantMark)] != variantMark {
		return "", "", false
	}
	rest := q[len(variantMark):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == 0 {
			return rest[:i], rest[i+1:], true
		}
	}
	return "", "", false
}

// Observed is the state after a read (GET/HEAD 2xx or 304) reported version
// v; v == "" means the response carried no version. The version leaves the
// superseded list, so that a resource that returns to an old state (ABA) is
// not held stale forever. A v made by VariantVersion is the version of one
// variant: see observedVariant.
func (s State) Observed(v string) State {
	if len(v) > 0 && v[0] == 0 {
		if id, vv, ok := splitVariant(v); ok {
			return s.observedVariant(id, vv)
		}
	}
	if len(s.Variants) > 0 && v != "" && s.Live && !s.Uncertain && !s.Deleted && !s.IsSuperseded(v) &&
		slices.ContainsFunc(s.Variants, func(x Variant) bool { return SameVersion(x.Version, v) }) {
		// A response without Vary that names a current variant's version
		// (a 304 that omits Vary, against RFC 9110 section 15.4.5) tells
		// nothing new: the other variants stay current.
		return s
	}
	return State{Version: v, Superseded: without(s.Superseded, v), Live: true}
}

// observedVariant is the state after a read of the variant id reported
// version v (README "What the proxy learns"): every variant read since the
// last write is current. v replaces only that variant's former version,
// which becomes superseded (unless another variant still has it); v leaves
// the superseded list (ABA). A variant that carried no version is
// forgotten. The other variants stay, unless the state was uncertain or a
// tombstone: then they may be stale and are forgotten (not superseded), so
// that a writer holding one is forwarded. One variant more than
// MaxVariants makes the version unknown: writes are forwarded until the
// next write or read tells a version again.
func (s State) observedVariant(id, v string) State {
	var vars []Variant
	if !s.Uncertain && !s.Deleted {
		vars = s.Variants
		if len(vars) == 0 && s.Version != "" {
			vars = []Variant{{Version: s.Version}} // learned without a variant: current until a write
		}
	}
	i := slices.IndexFunc(vars, func(x Variant) bool { return x.ID == id })
	sup := s.Superseded
	switch {
	case v == "" && i < 0:
		// Nothing known of this variant, nothing learned.
	case v == "":
		vars = slices.Delete(slices.Clone(vars), i, i+1)
	case i >= 0 && vars[i].Version == v:
		// Unchanged: the same state, so that a shared store sees no change.
		if s.Version == vars[0].Version && !s.Uncertain && !s.Deleted && s.Live && !s.IsSuperseded(v) {
			return s
		}
	case i >= 0:
		old := vars[i].Version
		vars = slices.Clone(vars)
		vars[i].Version = v
		if !slices.ContainsFunc(vars, func(x Variant) bool { return SameVersion(x.Version, old) }) {
			sup = supersede(sup, old)
		}
	case len(vars) >= MaxVariants:
		// Too many variants: unknown, the safe side.
		return State{Superseded: sup, Live: true}
	default:
		vars = append(slices.Clip(vars), Variant{ID: id, Version: v})
	}
	if v != "" {
		sup = without(sup, v)
	}
	if len(vars) == 0 {
		return State{Superseded: sup, Live: true}
	}
	return State{Version: vars[0].Version, Superseded: sup, Live: true, Variants: vars}
}

// Missing is the state after a read answered 404 or 410: a tombstone. A
// version known before becomes superseded.
func (s State) Missing() State {
	return State{Deleted: true, Superseded: s.supersededAll()}
}

// Changed is the state after something other than a guarded write changed
// the resource (MKCOL, the destination of COPY/MOVE, ...): it may exist now,
// in an unknown version. It is not live: the change may also have removed
// it (the source of a MOVE).
func (s State) Changed() State {
	return State{Superseded: s.supersededAll()}
}

// Forgotten is the state after a method that may have changed the
// resource in a way the proxy cannot see (MKCOL, PROPPATCH, the destination
// of a COPY or MOVE): the current version becomes unknown and the resource
// may exist now, but what was current (each variant's version too) is not
// known to be superseded, so a write based on it is forwarded (the upstream
// knows better).
func (s State) Forgotten() State {
	return State{Superseded: s.Superseded}
}

// WriteResult describes the upstream's answer to a forwarded write.
type WriteResult struct {
	Method  string
	Status  int    // 0 when no response was seen (aborted, timed out, panic)
	Version string // the response's version, "" if none
}

// AfterWrite is the state once a write based on the versions in based has
// been answered (README "What the proxy learns"). based holds the current version
// when the write was decided, if it was known, else the versions the client
// claimed. A write that changed the resource supersedes the current version
// of every variant too, and its response's version becomes the only current
// one.
func (s State) AfterWrite(based []string, r WriteResult) State {
	if len(s.Variants) > 0 && r.Status >= 200 && r.Status < 500 && r.Status != 499 &&
		(r.Status < 400 || r.Status == http.StatusConflict || r.Status == http.StatusPreconditionFailed) {
		// Every variant's version counts as one the write was based on.
		all := make([]string, 0, len(s.Variants)+len(based))
		for i := len(s.Variants) - 1; i >= 0; i-- {
			all = append(all, s.Variants[i].Version)
		}
		s.Variants = nil
		if r.Status == http.StatusConflict || r.Status == http.StatusPreconditionFailed {
			return State{Version: r.Version, Superseded: superseding(s.Superseded, Canonical(r.Version), all, s.Version), Live: s.Live}
		}
		based = append(all, based...)
	}
	switch {
	case r.Status == 0 || r.Status == 499 || r.Status >= 500:
		// The write may or may not have happened.
		n := s.clone()
		n.Uncertain = true
		return n
	case r.Status == http.StatusConflict || r.Status == http.StatusPreconditionFailed:
		// The upstream's own check failed: what we held is not current.
		return State{Version: r.Version, Superseded: superseding(s.Superseded, Canonical(r.Version), nil, s.Version), Live: s.Live}
	case r.Status >= 400:
		return s
	}
	if r.Method == http.MethodDelete {
		return State{Deleted: true, Superseded: superseding(s.Superseded, "", based, s.Version)}
	}
	v, c := r.Version, Canonical(r.Version)
	for _, b := range based {
		if v != "" && Canonical(b) == c {
			// The write changed the resource but not its validator (nginx's
			// mtime-size ETag, a one-second Last-Modified): the validator no
			// longer names one state, so the current version is unknown.
			v, c = "", ""
			break
		}
	}
	// A 3xx did not show that the resource exists.
	return State{Version: v, Superseded: superseding(s.Superseded, c, based, s.Version), Live: r.Status < 300}
}

// supersededAll is the superseded list once the current version, and each
// variant's, is superseded.
func (s State) supersededAll() []string {
	if len(s.Variants) == 0 {
		return supersede(s.Superseded, s.Version)
	}
	all := make([]string, 0, len(s.Variants))
	for i := len(s.Variants) - 1; i >= 0; i-- {
		all = append(all, s.Variants[i].Version)
	}
	return superseding(s.Superseded, "", all, s.Version)
}

func (s State) clone() State {
	n := s
	n.Superseded = slices.Clone(s.Superseded)
	return n
}

// supersede puts v (if any) at the front of list, dropping duplicates and
// keeping at most MaxSuperseded entries. list is not modified.
func supersede(list []string, v string) []string {
	if v == "" {
		return list
	}
	c := Canonical(v)
	n := make([]string, 0, min(len(list)+1, MaxSuperseded))
	n = append(n, c)
	for _, x := range list {
		if x != c && len(n) < MaxSuperseded {
			n = append(n, x)
		}
	}
	return n
}

// superseding is the list after a change to the version whose canonical
// form is current: supersede of each of based in turn and then of last
// (which ends up first), without current, in one allocation. list and based
// are not modified.
func superseding(list []string, current string, based []string, last string) []string {
	n := make([]string, 0, min(len(list)+len(based)+1, MaxSuperseded))
	// The new versions first, newest first. Usually based is [last].
	prev := ""
	for i := len(based); i >= 0; i-- {
		v := last
		if i < len(based) {
			v = based[i]
		}
		if v == "" || v == prev {
			continue
		}
		prev = v
		if c := Canonical(v); c != current && len(n) < MaxSuperseded && !slices.Contains(n, c) {
			n = append(n, c)
		}
	}
	// Then the list, whose entries are distinct already.
	added := len(n)
	for _, c := range list {
		if len(n) == MaxSuperseded {
			break
		}
		if c != current && !slices.Contains(n[:added], c) {
			n = append(n, c)
		}
	}
	if len(n) == 0 {
		return nil
	}
	return n
}

// without returns list minus v; list itself is not modified.
func without(list []string, v string) []string {
	if v == "" || len(list) == 0 {
		return list
	}
	c := Canonical(v)
	i := slices.Index(list, c)
	if i < 0 {
		return list
	}
	n := make([]string, 0, len(list)-1)
	n = append(n, list[:i]...)
	return append(n, list[i+1:]...)
}
