package conflict

import (
	"net/http"
	"slices"
)

// MaxSuperseded bounds the list of superseded versions kept per key.
const MaxSuperseded = 8

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

// Observed is the state after a read (GET/HEAD 2xx or 304) reported version
// v; v == "" means the response carried no version. The version leaves the
// superseded list, so that a resource that returns to an old state (ABA) is
// not held stale forever.
func (s State) Observed(v string) State {
	return State{Version: v, Superseded: without(s.Superseded, v), Live: true}
}

// Missing is the state after a read answered 404 or 410: a tombstone. A
// version known before becomes superseded.
func (s State) Missing() State {
	return State{Deleted: true, Superseded: supersede(s.Superseded, s.Version)}
}

// Changed is the state after something other than a guarded write changed
// the resource (MKCOL, the destination of COPY/MOVE, ...): it may exist now,
// in an unknown version. It is not live: the change may also have removed
// it (the source of a MOVE).
func (s State) Changed() State {
	return State{Superseded: supersede(s.Superseded, s.Version)}
}

// Forgotten is the state after a method that may have changed the
// resource in a way the proxy cannot see (MKCOL, PROPPATCH, the destination
// of a COPY or MOVE): the current version becomes unknown and the resource
// may exist now, but what was current is not known to be superseded, so a
// write based on it is forwarded (the upstream knows better).
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
// claimed.
func (s State) AfterWrite(based []string, r WriteResult) State {
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
