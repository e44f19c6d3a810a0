package caddyconflict

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// The kinds of `guard` (README "Guards for the seed's three conflicts").
const (
	GuardParent    = "parent"    // a write below a parent known not to exist: parent-missing
	GuardChildren  = "children"  // a DELETE of a resource with known live descendants: not-empty
	GuardReference = "reference" // a body field naming a resource known not to exist: reference-missing
)

// Guard is one `guard` sub-directive: a relation between resources that a
// write must not break. The proxy enforces it for the resources it has seen
// and, with `preflight`, asks the upstream about the ones it has not.
type Guard struct {
	// Kind is parent, children or reference.
	Kind string `json:"kind"`
	// Pointer is the RFC 6901 pointer of the body field that names the
	// referenced resource (reference only).
	Pointer string `json:"pointer,omitempty"`
	// Template is the path of the referenced resource on the same host,
	// with {value} standing for the field's value (reference only).
	Template string `json:"template,omitempty"`

	pointer conflict.Pointer
}

// childScanLimit bounds the descendants a children check or a DELETE's
// cleanup looks at; beyond it the proxy acts as if it knew no more.
const childScanLimit = 1000

// validateGuards checks the `guard` lines; each error names the
// sub-directive.
func (h *Handler) validateGuards() error {
	for _, g := range h.Guards {
		switch g.Kind {
		case GuardParent, GuardChildren:
			if g.Pointer != "" || g.Template != "" {
				return fmt.Errorf("conflict: guard: %s takes no pointer or template", g.Kind)
			}
		case GuardReference:
			if p, err := conflict.ParsePointer(g.Pointer); err != nil || len(p) == 0 {
				return fmt.Errorf("conflict: guard: reference needs an RFC 6901 pointer such as /categoryId, got %q", g.Pointer)
			}
			if err := conflict.CheckReferenceTemplate(g.Template); err != nil {
				return fmt.Errorf("conflict: guard: reference template %q: %v", g.Template, err)
			}
		default:
			return fmt.Errorf("conflict: guard: unknown kind %q (parent, children or reference <pointer> <template>)", g.Kind)
		}
	}
	return nil
}

// provisionGuards parses the guards' pointers; the configuration is valid.
func (h *Handler) provisionGuards() {
	for i := range h.Guards {
		if h.Guards[i].Kind == GuardReference {
			h.Guards[i].pointer, _ = conflict.ParsePointer(h.Guards[i].Pointer)
		}
	}
	if len(h.Guards) > 0 && !h.defaultKey {
		h.logger.Warn("guards look up related resources by their default key (host and path); " +
			"with a custom key they know only what preflight asks the upstream")
	}
}

func (h *Handler) hasGuard(kind string) bool {
	for _, g := range h.Guards {
		if g.Kind == kind {
			return true
		}
	}
	return false
}

// checkGuards evaluates the guards for a write to key whose state (taken
// under its write claim, re-read if it had to be) is s. It returns the
// rejection of the first guard the write breaks, naming the other
// resources, or nil when the write may go on to the version decision. What the
// proxy does not know lets the write through, unless `preflight` (ask the
// upstream) finds out; with `verify`, a rejection is confirmed first.
func (h *Handler) checkGuards(r *http.Request, next caddyhttp.Handler, key string, s conflict.State) *conflict.Rejection {
	if len(h.Guards) == 0 {
		return nil
	}
	p := cleanPath(r.URL.Path)
	for _, g := range h.Guards {
		switch {
		case g.Kind == GuardParent && r.Method != http.MethodDelete:
			pp, ok := conflict.ParentPath(r.Method, p)
			if !ok {
				continue
			}
			pk, held := h.relatedKey(r, pp), (*conflict.State)(nil)
			if pk == key {
				held = &s // a POST's parent is its own key, whose state the caller holds
			}
			if h.related(r, next, pk, pp, held) == missing {
				return conflict.GuardRejection(conflict.KindParentMissing, []string{pk})
			}
		case g.Kind == GuardChildren && r.Method == http.MethodDelete:
			if live := h.liveChildren(r, next, p); len(live) > 0 {
				return conflict.GuardRejection(conflict.KindNotEmpty, live)
			}
		}
	}
	if r.Method != http.MethodDelete {
		if related := h.missingReferences(r, next); len(related) > 0 {
			return conflict.GuardRejection(conflict.KindReferenceMissing, related)
		}
	}
	return nil
}

// existence is what the proxy can tell about a related resource.
type existence int

const (
	unknown existence = iota
	exists
	missing
)

// related tells whether the resource at path p (key k) exists. The store
// answers first; a tombstone is confirmed with the upstream under `verify`,
// and an unknown resource is asked about under `preflight`. held is k's
// state when the caller holds k's write claim, else nil.
func (h *Handler) related(r *http.Request, next caddyhttp.Handler, k, p string, held *conflict.State) existence {
	var s conflict.State
	if held != nil {
		s = *held
	} else if got, found, err := h.store.Get(r.Context(), k); err == nil && found {
		s = got
	}
	switch {
	case s.IsGone():
		if !h.Verify {
			return missing
		}
		return h.probeShared(rereadVerify, r, next, k, p)
	case s.IsLive():
		return exists
	case h.Preflight:
		return h.probeShared(rereadPreflight, r, next, k, p)
	}
	return unknown
}

// liveChildren lists up to conflict.MaxRelated keys below path p that the
// proxy saw exist and not deleted since. Under `verify` each is confirmed
// with the upstream, and only those that still exist are named.
func (h *Handler) liveChildren(r *http.Request, next caddyhttp.Handler, p string) []string {
	base := h.relatedKey(r, p)
	var live []string
	h.eachLiveChild(r.Context(), base, func(k string) bool {
		live = append(live, k)
		return len(live) < conflict.MaxRelated
	})
	if !h.Verify || len(live) == 0 {
		return live
	}
	confirmed := live[:0]
	for _, k := range live {
		// A key below base is base's host, then the path.
		if h.probeShared(rereadVerify, r, next, k, k[strings.IndexByte(k, '/'):]) == exists {
			confirmed = append(confirmed, k)
		}
	}
	return confirmed
}

// eachLiveChild calls fn for the live keys below key, in order, until fn
// returns false or childScanLimit keys were looked at.
func (h *Handler) eachLiveChild(ctx context.Context, key string, fn func(k string) bool) {
	prefix := key + "/"
	if strings.HasSuffix(key, "/") {
		prefix = key // the root: "host/"
	}
	after := ""
	for scanned := 0; scanned < childScanLimit; {
		items, next, err := h.store.List(ctx, prefix, after, 100)
		if err != nil {
			return
		}
		for _, it := range items {
			if it.State.IsLive() && !fn(it.Key) {
				return
			}
		}
		scanned += len(items)
		if next == "" {
			return
		}
		after = next
	}
}

// missingReferences returns the keys of the resources that the write's
// JSON body names through `guard reference` lines and that do not exist.
// A body that is not JSON, or larger than max_body, is not looked into.
func (h *Handler) missingReferences(r *http.Request, next caddyhttp.Handler) []string {
	if !h.hasGuard(GuardReference) || r.Body == nil || r.Body == http.NoBody || !isJSON(r.Header.Get("Content-Type")) {
		return nil
	}
	body, complete, err := readUpTo(r, h.MaxBody)
	if err != nil || !complete {
		return nil
	}
	var gone []string
	for _, g := range h.Guards {
		if g.Kind != GuardReference {
			continue
		}
		values, err := conflict.ReferenceValues(body, g.pointer)
		if err != nil {
			return nil // not JSON: the upstream will say so
		}
		for _, v := range values {
			p, ok := conflict.ExpandReference(g.Template, v)
			if !ok {
				continue
			}
			p = cleanPath(p)
			k := h.relatedKey(r, p)
			if h.related(r, next, k, p, nil) == missing {
				gone = append(gone, k)
				if len(gone) == conflict.MaxRelated {
					return gone
				}
			}
		}
	}
	return gone
}

// afterGuardedWrite keeps what the guards rely on true once a write was
// answered: after a DELETE succeeded, the resources below it are no longer
// counted as live (WebDAV deletes a collection with its members), so that a
// collection created again is not held non-empty by what it once held.
// Their versions are kept; each is changed under its own write claim, and
// one that a write holds is left to that write.
func (h *Handler) afterGuardedWrite(ctx context.Context, r *http.Request, status int) {
	if r.Method != http.MethodDelete || status < 200 || status >= 300 || !h.hasGuard(GuardChildren) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	var live []string
	h.eachLiveChild(ctx, h.relatedKey(r, cleanPath(r.URL.Path)), func(k string) bool {
		live = append(live, k)
		return true
	})
	for _, k := range live {
		lease, snap, err := h.store.Claim(ctx, k, 0)
		if err != nil {
			continue
		}
		if !snap.Found || !snap.State.Live {
			lease.Release()
			continue
		}
		s := snap.State
		s.Live = false
		_ = lease.Commit(ctx, s)
	}
}

// probes collapses concurrent upstream checks of one related resource.
var probes singleflight.Group

// probeShared asks the upstream whether the resource at path p (key k)
// exists, once for all the writes that want to know at the same moment,
// and records what it learned. reason labels the re-read metric.
func (h *Handler) probeShared(reason string, r *http.Request, next caddyhttp.Handler, k, p string) existence {
	v, _, _ := probes.Do(h.poolKey+"\x00"+k, func() (any, error) {
		// A preflight that found k unknown may reach here just after another
		// flight for k ended and recorded the answer: use it, don't ask again.
		// (verify asks whatever the store holds: that is its point.)
		if st, ok, err := h.store.Get(r.Context(), k); reason == rereadPreflight && err == nil && ok {
			switch {
			case st.IsLive():
				return exists, nil
			case st.IsGone():
				return missing, nil
			}
		}
		tok := h.store.ReadStart(k)
		e, version := h.probe(r, next, p)
		switch e {
		case exists:
			_, _ = h.store.Observe(r.Context(), k, tok, version, false)
		case missing:
			_, _ = h.store.Observe(r.Context(), k, tok, "", true)
		}
		if ce := h.logger.Check(zap.DebugLevel, "guard asked the upstream"); ce != nil {
			ce.Write(zap.String("key", k), zap.String("reason", reason), zap.Int("existence", int(e)))
		}
		return e, nil
	})
	e := v.(existence)
	countReread(reason, e != unknown)
	return e
}
