package caddyconflict

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

func init() {
	caddy.RegisterModule(Admin{})
}

// Admin is the admin API module (admin.api.conflict): it reads, lists and
// purges the version table, so that a process writing to the upstream
// behind the proxy's back can fence it.
//
//	GET    /conflict/versions?key=K                      one key's state
//	GET    /conflict/versions?prefix=P[&after=C&limit=N] keys by prefix, paginated
//	DELETE /conflict/versions?key=K | ?prefix=P          purge ({"purged": N})
//	DELETE /conflict/versions  {"key": K} | {"prefix": P} the same, as JSON
//
// A list page is {"items": [...], "next": C}: pass C as after for the next
// page ("" on the last one). Errors are problem documents (RFC 9457).
type Admin struct{}

// CaddyModule returns the Caddy module information.
func (Admin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.conflict",
		New: func() caddy.Module { return new(Admin) },
	}
}

// Routes returns the admin routes.
func (a Admin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/conflict/versions", Handler: caddy.AdminHandlerFunc(a.serveVersions)}}
}

const (
	adminDefaultLimit = 100
	adminMaxLimit     = 1000
	adminMaxKey       = 4096
)

// KeyState is one key of the version table as the admin API shows it.
// Versions are written as in an ETag header (quoted).
type KeyState struct {
	Key            string   `json:"key"`
	CurrentVersion string   `json:"current_version,omitempty"`
	Superseded     []string `json:"superseded,omitempty"`
	Deleted        bool     `json:"deleted,omitempty"`
	Uncertain      bool     `json:"uncertain,omitempty"`
}

func keyState(key string, s conflict.State) KeyState {
	ks := KeyState{Key: key, Deleted: s.Deleted, Uncertain: s.Uncertain}
	if s.Known() {
		ks.CurrentVersion = conflict.Quote(s.Version)
	}
	for _, v := range s.Superseded {
		ks.Superseded = append(ks.Superseded, conflict.Quote(v))
	}
	return ks
}

// adminSelector is what a request names: one key or a prefix.
type adminSelector struct {
	Key    *string `json:"key"`
	Prefix *string `json:"prefix"`
}

// adminError is a request the admin API answers with a problem document.
type adminError struct {
	status int
	kind   conflict.Kind
	detail string
}

func badRequest(detail string) *adminError {
	return &adminError{http.StatusBadRequest, "invalid-admin-request", detail}
}

// selector reads the key or prefix from the query, or for a DELETE without
// one, from a JSON body {"key": K} or {"prefix": P} (keys with characters
// that would need escaping in a URL).
func selector(r *http.Request) (adminSelector, *adminError) {
	var sel adminSelector
	q := r.URL.Query()
	if q.Has("key") {
		k := q.Get("key")
		sel.Key = &k
	}
	if q.Has("prefix") {
		p := q.Get("prefix")
		sel.Prefix = &p
	}
	if sel.Key == nil && sel.Prefix == nil && r.Method == http.MethodDelete && r.ContentLength != 0 {
		dec := json.NewDecoder(io.LimitReader(r.Body, 2*adminMaxKey+64))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sel); err != nil {
			return sel, badRequest(`The body must be a JSON object {"key": "..."} or {"prefix": "..."}: ` + err.Error())
		}
	}
	switch {
	case (sel.Key == nil) == (sel.Prefix == nil):
		return sel, badRequest("Give exactly one of key (one key, such as example.com/articles/1) or prefix (such as example.com/articles/), as a query parameter.")
	case sel.Key != nil && (*sel.Key == "" || len(*sel.Key) > adminMaxKey || hasControl(*sel.Key)):
		return sel, badRequest(fmt.Sprintf("key must be a non-empty key of at most %d bytes without control characters, as the key template expands it, such as example.com/articles/1.", adminMaxKey))
	case sel.Prefix != nil && (len(*sel.Prefix) > adminMaxKey || hasControl(*sel.Prefix)):
		return sel, badRequest(fmt.Sprintf("prefix must be text of at most %d bytes without control characters, such as example.com/articles/ (empty: every key).", adminMaxKey))
	}
	return sel, nil
}

func (a Admin) serveVersions(w http.ResponseWriter, r *http.Request) error {
	var aerr *adminError
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		aerr = a.read(w, r)
	case http.MethodDelete:
		aerr = a.purge(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		aerr = &adminError{http.StatusMethodNotAllowed, "invalid-admin-request",
			"Use GET to read or list versions and DELETE to purge them."}
	}
	if aerr != nil {
		p := conflict.NewProblem(conflict.DefaultProblemBase, aerr.kind, aerr.status, aerr.detail)
		p.Title = http.StatusText(aerr.status)
		p.Instance = r.URL.Path
		writeProblem(w, r, p)
	}
	return nil
}

func storeFailed(what string, err error) *adminError {
	return &adminError{http.StatusServiceUnavailable, conflict.KindStoreUnavailable,
		"The version table could not be " + what + ": " + err.Error()}
}

// purge forgets one key or every key with a prefix; the next write to a
// purged key is decided as unknown (forwarded).
func (a Admin) purge(w http.ResponseWriter, r *http.Request) *adminError {
	sel, aerr := selector(r)
	if aerr != nil {
		return aerr
	}
	target, isPrefix := "", sel.Prefix != nil
	if isPrefix {
		target = *sel.Prefix
	} else {
		target = *sel.Key
	}
	n := 0
	for _, s := range openStores() {
		k, err := s.Purge(r.Context(), target, isPrefix)
		if err != nil {
			return storeFailed("purged", err)
		}
		n += k
	}
	// A purge meant to remove data removes its representations too.
	for _, hist := range openHistories() {
		hist.Purge(target, isPrefix)
		if !isPrefix {
			hist.Purge(target+"\x00", true) // every history_scope of the key
		}
	}
	writeJSON(w, r, map[string]int{"purged": n})
	return nil
}

// read answers one key's state, or a page of the keys with a prefix.
func (a Admin) read(w http.ResponseWriter, r *http.Request) *adminError {
	sel, aerr := selector(r)
	if aerr != nil {
		return aerr
	}
	ctx := r.Context()
	all := openStores()
	if sel.Key != nil {
		key := *sel.Key
		for _, s := range all {
			st, ok, err := s.Get(ctx, key)
			if err != nil {
				return storeFailed("read", err)
			}
			if ok {
				writeJSON(w, r, keyState(key, st))
				return nil
			}
		}
		detail := fmt.Sprintf("Nothing is known about %q: a write to it is forwarded unchecked.", key)
		if strings.Contains(key, "://") {
			detail += " Keys are written as the key template expands them, by default without a scheme: example.com/articles/1."
		}
		return &adminError{http.StatusNotFound, "unknown-key", detail}
	}

	q := r.URL.Query()
	limit := adminDefaultLimit
	if l := q.Get("limit"); l != "" || q.Has("limit") {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > adminMaxLimit {
			return badRequest(fmt.Sprintf("limit must be a number from 1 to %d, got %q.", adminMaxLimit, l))
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > adminMaxKey || hasControl(after) {
		return badRequest(`after must be the "next" cursor of the previous page.`)
	}
	var items []KeyState
	for _, s := range all {
		list, _, err := s.List(ctx, *sel.Prefix, after, limit+1)
		if err != nil {
			return storeFailed("listed", err)
		}
		for _, it := range list {
			items = append(items, keyState(it.Key, it.State))
		}
	}
	// Several tables (handlers with different version sources) may hold
	// the same key: one page, in key order.
	slices.SortFunc(items, func(a, b KeyState) int { return strings.Compare(a.Key, b.Key) })
	items = slices.CompactFunc(items, func(a, b KeyState) bool { return a.Key == b.Key })
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].Key
	}
	if items == nil {
		items = []KeyState{}
	}
	writeJSON(w, r, map[string]any{"items": items, "next": next})
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, _ := json.Marshal(v) // plain structs, maps and strings: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// Interface guard
var _ caddy.AdminRouter = Admin{}
