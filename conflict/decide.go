package conflict

import (
	"net/http"
	"time"
)

// Policy holds the configuration that shapes decisions.
type Policy struct {
	// RequirePrecondition turns a write without a claim into a 428.
	RequirePrecondition bool
	// StaleStatus is the status of stale-version and deleted rejections
	// (409 by default, 412 for RFC 9110 strictness).
	StaleStatus int
	// Dates compares versions as HTTP dates (version last_modified).
	Dates bool
	// HeaderVersions says versions come from a response header (version
	// header): an If-Match may then hold the upstream's own ETag, which
	// the proxy does not track, so it is judged only against the versions
	// known to be superseded.
	HeaderVersions bool
}

// Decision is the verdict on a write.
type Decision struct {
	// Kind is empty when the write is forwarded.
	Kind   Kind
	Status int
}

// Forward reports whether the write may go to the upstream.
func (d Decision) Forward() bool { return d.Kind == "" }

var forward = Decision{}

// Decide applies the decision table (README "How writes are decided") to
// the known state of a key and a write's claim. An unknown state always
// forwards: a missing cache entry may never cause a rejection.
func Decide(s State, c Precondition, p Policy) Decision {
	stale := p.StaleStatus
	if stale == 0 {
		stale = http.StatusConflict
	}
	switch {
	case c.Kind == PreconditionNone:
		if p.RequirePrecondition {
			return Decision{Kind: KindPreconditionRequired, Status: http.StatusPreconditionRequired}
		}
		return forward
	case c.Kind == PreconditionForeign:
		return forward // not a form the version source produces: the upstream judges it
	case p.HeaderVersions && c.Kind == PreconditionVersions && c.Source == "If-Match" && s.Known() && !s.Deleted:
		for _, v := range c.Versions {
			if SameVersion(v, s.Version) {
				return forward
			}
		}
		s = State{Superseded: s.Superseded} // a tag other than the version: maybe the upstream's ETag
	}
	switch {
	case s.Deleted:
		switch c.Kind {
		case PreconditionAbsent:
			return forward
		default:
			return Decision{Kind: KindDeleted, Status: stale}
		}
	case s.Known():
		switch c.Kind {
		case PreconditionAny:
			return forward
		case PreconditionAbsent:
			// RFC 9110 section 13.1.2: If-None-Match: * fails when a current
			// representation exists.
			return Decision{Kind: KindAlreadyExists, Status: http.StatusPreconditionFailed}
		case PreconditionDate:
			if cur, ok := parseDate(s.Version); ok && !cur.After(c.Date) {
				return forward
			} else if !ok {
				return forward
			}
			return Decision{Kind: KindStaleVersion, Status: stale}
		default:
			for _, v := range c.Versions {
				if SameVersion(v, s.Version) {
					return forward
				}
			}
			return Decision{Kind: KindStaleVersion, Status: stale}
		}
	case len(s.Superseded) > 0:
		switch c.Kind {
		case PreconditionDate:
			// Superseded dates are canonical strings; a client whose date is
			// not after the newest superseded one read a replaced state.
			newest, ok := newestDate(s.Superseded)
			if ok && !c.Date.After(newest) {
				return Decision{Kind: KindStaleVersion, Status: stale}
			}
			return forward
		case PreconditionVersions:
			for _, v := range c.Versions {
				if !s.IsSuperseded(v) {
					return forward
				}
			}
			return Decision{Kind: KindStaleVersion, Status: stale}
		}
	}
	return forward
}

func parseDate(v string) (time.Time, bool) {
	t, err := http.ParseTime(Canonical(v))
	return t, err == nil
}

func newestDate(list []string) (time.Time, bool) {
	var newest time.Time
	found := false
	for _, v := range list {
		if t, ok := parseDate(v); ok && (!found || t.After(newest)) {
			newest, found = t, true
		}
	}
	return newest, found
}
