package caddyconflict

import (
	"context"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// This file is the handler's entry point: which path a request takes
// (guarded write, read, other method), the key it addresses, and the read
// path, which only learns versions. The write path is in write.go.

// ServeHTTP guards writes and learns versions from every response.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	key := h.keyOf(r, repl)
	if repl != nil {
		repl.Set("http.conflict.key", key)
	}
	switch {
	case h.methods[r.Method]:
		return h.serveWrite(w, r, next, key, repl)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return h.serveRead(w, r, next, key, repl)
	default:
		return h.serveOther(w, r, next, key, repl)
	}
}

// keyOf expands the key template for r.
func (h *Handler) keyOf(r *http.Request, repl *caddy.Replacer) string {
	if h.defaultKey || repl == nil {
		return keyFor(r.Host, r.URL.Path)
	}
	return repl.ReplaceAll(h.Key, "")
}

// keyFor is the default key of a host and a path: the host (without port)
// lower-cased, then the cleaned path.
func keyFor(host, p string) string {
	if h, _, err := splitHostPort(host); err == nil {
		host = h
	}
	if p == "" {
		p = "/"
	}
	cp := path.Clean(p)
	if !hasUpper(host) {
		return host + cp
	}
	return strings.ToLower(host) + cp
}

func splitHostPort(hostport string) (string, string, error) {
	// A host without a port is the common case; avoid net.SplitHostPort's error allocation.
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 || strings.HasSuffix(hostport, "]") {
		return strings.Trim(hostport, "[]"), "", nil
	}
	return strings.Trim(hostport[:i], "[]"), hostport[i+1:], nil
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// serveRead forwards a GET or HEAD and learns the version it reports.
func (h *Handler) serveRead(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string, repl *caddy.Replacer) error {
	if r.URL.RawQuery != "" && !h.keyHasQuery {
		// Another representation (?_embed=...) with another validator.
		ow, err := h.forward(w, r, next)
		setPlaceholders(repl, "read", ow.version)
		return err
	}
	tok := h.store.ReadStart(key)
	ow, err := h.forward(w, r, next)
	if err != nil && ow.status == 0 {
		setPlaceholders(repl, "read", "")
		return err
	}
	switch {
	case ow.status >= 200 && ow.status < 300 || ow.status == http.StatusNotModified:
		v := ow.version
		if v == "" && h.bodyVersions() && (r.Method == http.MethodHead || ow.status == http.StatusNotModified) {
			break // no body to take the version from: keep what a GET learned
		}
		_, _ = h.store.Observe(r.Context(), key, tok, v, false)
		if h.history != nil && err == nil {
			h.remember(key, ow)
		}
	case ow.status == http.StatusNotFound || ow.status == http.StatusGone:
		_, _ = h.store.Observe(r.Context(), key, tok, "", true)
	}
	if repl != nil {
		repl.Set("http.conflict.outcome", "read")
		repl.Set("http.conflict.current_version", ow.version)
	}
	return err
}

// safeMethods change nothing on the upstream.
var safeMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true, http.MethodTrace: true,
	"PROPFIND": true, "REPORT": true, "SEARCH": true,
}

// serveOther forwards a request that is neither a guarded write nor a read.
// If it may have changed the resource, what the proxy knew about the key
// (and about a COPY/MOVE destination, a POST's Location) is forgotten.
func (h *Handler) serveOther(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string, repl *caddy.Replacer) error {
	ow, err := h.forward(w, r, next)
	setPlaceholders(repl, "pass", ow.version)
	if safeMethods[r.Method] || ow.status < 200 || ow.status >= 400 {
		return err
	}
	ctx := r.Context()
	if r.Method == http.MethodPost {
		h.learnLocation(ctx, r, ow)
		return err
	}
	h.changed(ctx, key)
	if dest := r.Header.Get("Destination"); dest != "" && (r.Method == "COPY" || r.Method == "MOVE") {
		if u, perr := url.Parse(dest); perr == nil && (u.Host == "" || strings.EqualFold(u.Host, r.Host)) {
			h.changed(ctx, h.relatedKey(r, u.Path))
		}
	}
	return err
}

// changed forgets the current version of key, under the key's write claim
// so that it cannot overwrite a guarded write's outcome recorded meanwhile.
func (h *Handler) changed(ctx context.Context, key string) {
	lease, snap, err := h.store.Claim(ctx, key, time.Duration(h.LockTimeout))
	if err != nil {
		// Still forget what was known: a stale "current" is worse than none.
		s, _, _ := h.store.Get(ctx, key)
		_ = h.store.Record(context.WithoutCancel(ctx), key, s.Changed())
		return
	}
	_ = lease.Commit(context.WithoutCancel(ctx), snap.State.Changed())
}

// relatedKey is the key of another path on the same host as r. With a
// custom key template it is the default key of that path.
func (h *Handler) relatedKey(r *http.Request, p string) string {
	return keyFor(r.Host, p)
}

// learnLocation records the version of a resource a POST created: it
// belongs to the Location, never to the collection the POST was sent to.
func (h *Handler) learnLocation(ctx context.Context, r *http.Request, ow *observer) {
	if ow.status != http.StatusCreated {
		return
	}
	loc := ow.Header().Get("Location")
	if loc == "" {
		return
	}
	u, err := r.URL.Parse(loc)
	if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, r.Host)) {
		return
	}
	k := h.relatedKey(r, u.Path)
	if ow.version == "" {
		h.changed(ctx, k)
		return
	}
	_ = h.store.Record(ctx, k, conflict.State{Version: ow.version, Live: true})
}

// setPlaceholders sets {http.conflict.outcome} and
// {http.conflict.current_version} ({http.conflict.key} is set on entry).
func setPlaceholders(repl *caddy.Replacer, outcome, version string) {
	if repl != nil {
		repl.Set("http.conflict.outcome", outcome)
		repl.Set("http.conflict.current_version", version)
	}
}

// cleanPath is p as keys hold it.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return path.Clean(p)
}
