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
		if len(s.Variants) > 0 && s.anyCurrent(c.Versions) {
			return forward
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
			if len(s.Variants) > 0 {
				return decideVariantDate(s, c.Date, stale)
			}
			return Decision{Kind: KindStaleVersion, Status: stale}
		default:
			for _, v := range c.Versions {
				if SameVersion(v, s.Version) {
					return forward
				}
			}
			if len(s.Variants) > 0 {
				return decideVariants(s, c.Versions, stale)
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

// decideVariants judges the claimed versions L of a write to a negotiated
// resource whose first variant's version is not among them. The proxy knows
// the versions of the variants read since the last write, never all of
// them: a tag of one of them is current, a tag known to be superseded (by a
// write, or by a newer read of its variant) is stale, and any other tag may
// be the version of a variant not read since, so it is forwarded (a missing
// entry never causes a rejection).
func decideVariants(s State, l []string, stale int) Decision {
	if s.anyCurrent(l) {
		return forward
	}
	for _, v := range l {
		if !s.IsSuperseded(v) {
			return forward
		}
	}
	return Decision{Kind: KindStaleVersion, Status: stale}
}

// decideVariantDate is decideVariants for an If-Unmodified-Since date that
// is before the first variant's date: it passes when another variant's date
// is not after it, and is stale only when it is not after the newest
// superseded date.
func decideVariantDate(s State, d time.Time, stale int) Decision {
	for _, x := range s.Variants {
		if cur, ok := parseDate(x.Version); !ok || !cur.After(d) {
			return forward
		}
	}
	if newest, ok := newestDate(s.Superseded); ok && !d.After(newest) {
		return Decision{Kind: KindStaleVersion, Status: stale}
	}
	return forward
}

// anyCurrent reports whether one of l is the current version of a variant.
func (s State) anyCurrent(l []string) bool {
	for _, v := range l {
		for _, x := range s.Variants {
			if SameVersion(v, x.Version) {
				return true
			}
		}
	}
	return false
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
