package caddyconflict

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
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
//	DELETE /conflict/versions?key=K | ?prefix=P          purge
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

// openStores lists the version tables of the running configuration.
func openStores() []versioncache.Store {
	var list []versioncache.Store
	stores.Range(func(_, v any) bool {
		if s, ok := v.(pooledStore); ok {
			list = append(list, s.Store)
		}
		return true
	})
	return list
}

// KeyState is one key of the version table as the admin API shows it.
type KeyState struct {
	Key            string   `json:"key"`
	CurrentVersion string   `json:"current_version,omitempty"`
	Superseded     []string `json:"superseded,omitempty"`
	Deleted        bool     `json:"deleted,omitempty"`
	Uncertain      bool     `json:"uncertain,omitempty"`
}

func keyState(key string, s conflict.State) KeyState {
	ks := KeyState{Key: key, Superseded: s.Superseded, Deleted: s.Deleted, Uncertain: s.Uncertain}
	if s.Known() {
		ks.CurrentVersion = conflict.Quote(s.Version)
	}
	return ks
}

func (a Admin) serveVersions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	key, hasKey := q.Get("key"), q.Has("key")
	prefix, hasPrefix := q.Get("prefix"), q.Has("prefix")
	fail := func(status int, detail string) error {
		p := conflict.NewProblem(conflict.DefaultProblemBase, "invalid-admin-request", status, detail)
		p.Title = http.StatusText(status)
		p.Instance = r.URL.Path
		writeProblem(w, r, p)
		return nil
	}
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodDelete:
		w.Header().Set("Allow", "GET, DELETE")
		return fail(http.StatusMethodNotAllowed, "Use GET to read or list versions and DELETE to purge them.")
	case hasKey == hasPrefix:
		return fail(http.StatusBadRequest, "Give exactly one of the query parameters key or prefix.")
	case hasKey && (key == "" || len(key) > adminMaxKey || hasControl(key)):
		return fail(http.StatusBadRequest, "key must be a non-empty key as the key template expands it, such as example.com/articles/1.")
	case hasPrefix && (len(prefix) > adminMaxKey || hasControl(prefix)):
		return fail(http.StatusBadRequest, "prefix must be printable text of at most 4096 bytes.")
	}
	ctx := r.Context()
	all := openStores()

	if r.Method == http.MethodDelete {
		n := 0
		for _, s := range all {
			k, err := s.Purge(ctx, key+prefix, hasPrefix)
			if err != nil {
				return fail(http.StatusServiceUnavailable, "The version table could not be purged: "+err.Error())
			}
			n += k
		}
		return writeJSON(w, map[string]int{"purged": n})
	}

	if hasKey {
		for _, s := range all {
			st, ok, err := s.Get(ctx, key)
			if err != nil {
				return fail(http.StatusServiceUnavailable, "The version table could not be read: "+err.Error())
			}
			if ok {
				return writeJSON(w, keyState(key, st))
			}
		}
		return fail(http.StatusNotFound, fmt.Sprintf("Nothing is known about %q: a write to it is forwarded unchecked.", key))
	}

	limit := adminDefaultLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > adminMaxLimit {
			return fail(http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d.", adminMaxLimit))
		}
		limit = n
	}
	after := q.Get("after")
	var items []KeyState
	next := ""
	for _, s := range all {
		list, _, err := s.List(ctx, prefix, after, limit+1)
		if err != nil {
			return fail(http.StatusServiceUnavailable, "The version table could not be listed: "+err.Error())
		}
		for _, it := range list {
			items = append(items, keyState(it.Key, it.State))
		}
	}
	slices.SortFunc(items, func(a, b KeyState) int { return strings.Compare(a.Key, b.Key) })
	items = slices.CompactFunc(items, func(a, b KeyState) bool { return a.Key == b.Key })
	if len(items) > limit {
		items = items[:limit]
		next = items[limit-1].Key
	}
	if items == nil {
		items = []KeyState{}
	}
	return writeJSON(w, map[string]any{"items": items, "next": next})
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func writeJSON(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, err = w.Write(body)
	return err
}

// Interface guard
var _ caddy.AdminRouter = Admin{}
