package caddyconflict

import (
	"context"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

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
		return h.serveWrite(w, r, next, key, repl, r.Method)
	case r.Method == http.MethodPost && h.methodOverride && h.methods[overridden(r.Header)]:
		return h.serveWrite(w, r, next, key, repl, overridden(r.Header))
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return h.serveRead(w, r, next, key, repl)
	default:
		return h.serveOther(w, r, next, key, repl)
	}
}

// overridden is the method a POST's method-override header names, as
// Express's method-override, Rails, Laravel and Google APIs read it ("" if
// none).
func overridden(hdr http.Header) string {
	for _, name := range [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"} {
		if v := hdr[name]; len(v) > 0 {
			return strings.ToUpper(strings.TrimSpace(v[0]))
		}
	}
	return ""
}

// keyOf expands the key template for r. Whatever the template, host
// placeholders expand lower-cased and the path cleaned, so that aliases of
// one URL (//a, /./a, /a/, Host: API.Example) are one key.
func (h *Handler) keyOf(r *http.Request, repl *caddy.Replacer) string {
	if h.defaultKey || repl == nil {
		return keyFor(r.Host, r.URL.Path)
	}
	if h.keyUses&useHost != 0 {
		repl.Set("http.conflict.host", strings.ToLower(hostOf(r.Host)))
	}
	if h.keyUses&useHostPort != 0 {
		repl.Set("http.conflict.hostport", strings.ToLower(r.Host))
	}
	if h.keyUses&usePath != 0 {
		repl.Set("http.conflict.path", cleanPath(r.URL.Path))
	}
	return repl.ReplaceAll(h.keyTemplate, "")
}

// hostOf is the host of a Host header without its port, as Caddy's
// {http.request.host} gives it.
func hostOf(hostport string) string {
	if strings.HasPrefix(hostport, "[") {
		if i := strings.IndexByte(hostport, ']'); i > 0 {
			return hostport[1:i]
		}
	}
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && strings.Count(hostport, ":") == 1 {
		return hostport[:i]
	}
	return hostport
}

// Placeholders of a key template that keyOf sets normalized.
const (
	useHost = 1 << iota
	useHostPort
	usePath
)

// keyPlaceholders maps the request placeholders a key template may use to
// the normalized ones keyOf sets.
var keyPlaceholders = [...]struct {
	from, to string
	use      int
}{
	{"{http.request.host}", "{http.conflict.host}", useHost},
	{"{http.request.hostport}", "{http.conflict.hostport}", useHostPort},
	{"{http.request.uri.path}", "{http.conflict.path}", usePath},
}

// keyTemplateOf is the key template with its host and path placeholders
// replaced by the normalized ones, and which of them it uses.
func keyTemplateOf(key string) (string, int) {
	uses := 0
	for _, p := range keyPlaceholders {
		if strings.Contains(key, p.from) {
			key = strings.ReplaceAll(key, p.from, p.to)
			uses |= p.use
		}
	}
	return key, uses
}

// keyFor is the default key of a Host header and a path: the origin (the
// host lower-cased, with its port when the Host header has one: two sites
// on two ports are two origins), then the cleaned path.
func keyFor(host, p string) string {
	cp := cleanPath(p)
	if !hasUpper(host) {
		return host + cp
	}
	return strings.ToLower(host) + cp
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
	case ow.status == http.StatusPartialContent && h.bodyVersions():
		// A byte range is not the representation: never hashed or parsed.
	case ow.status >= 200 && ow.status < 300 || ow.status == http.StatusNotModified:
		// A 206's validator is the whole representation's (RFC 9110
		// section 15.3.7): learned like a 200's.
		v := ow.version
		if v == "" && h.bodyVersions() && (r.Method == http.MethodHead || ow.status == http.StatusNotModified) {
			break // no body to take the version from: keep what a GET learned
		}
		_, _ = h.store.Observe(r.Context(), key, tok, variantVersion(ow.Header(), r.Header, v), false)
		if h.history != nil && err == nil {
			h.remember(h.historyKey(key, repl), ow)
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

// unchanging lists the methods that never change a representation
// (README "What the proxy learns"): they leave the key's state alone. A
// WebDAV client's LOCK before it saves must not make the ETag it holds
// look stale.
var unchanging = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true, http.MethodTrace: true,
	http.MethodConnect: true, "PROPFIND": true, "REPORT": true, "SEARCH": true, "LOCK": true, "UNLOCK": true,
}

// serveOther forwards a request that is neither a guarded write nor a read.
// A method that may have changed the resource makes its version unknown
// without superseding it (what was current may still be); a MOVE leaves a
// tombstone at its source; a COPY changes only its destination; a POST's
// version belongs to its Location.
func (h *Handler) serveOther(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string, repl *caddy.Replacer) error {
	ow, err := h.forward(w, r, next)
	setPlaceholders(repl, "pass", ow.version)
	if unchanging[r.Method] || ow.status < 200 || ow.status >= 400 {
		return err
	}
	ctx := r.Context()
	switch r.Method {
	case http.MethodPost:
		h.learnLocation(ctx, r, ow)
		return err
	case "COPY": // the source is read, not changed
	case "MOVE":
		h.update(ctx, key, conflict.State.Missing)
	default:
		h.update(ctx, key, conflict.State.Forgotten)
	}
	if r.Method == "COPY" || r.Method == "MOVE" {
		if u, perr := url.Parse(r.Header.Get("Destination")); perr == nil && u.Path != "" &&
			(u.Host == "" || strings.EqualFold(u.Host, r.Host)) {
			h.update(ctx, h.relatedKey(r, u.Path), conflict.State.Forgotten)
		}
	}
	return err
}

// variantOf tells whether a response is one variant of several (RFC 9110
// section 12.5.5) and which: its Vary names a request header other than
// Accept-Encoding (the coding changes the bytes, not the version) and
// Origin (CORS middleware varies its headers, not the representation). id
// is then a digest of the request header values those names select, so
// that reads of one variant share it. A Vary of "*" gives id "*" and ok
// false: the variant cannot be told.
// variantVersion is v as the version of the variant resp is, for req: one
// variant's version is not the others' (README "What the proxy learns"), so
// it replaces only its own variant's. Vary: * names no headers to tell
// variants by: the version is unknown ("").
func variantVersion(resp, req http.Header, v string) string {
	if id, ok := variantOf(resp, req); ok {
		return conflict.VariantVersion(id, v)
	} else if id == "*" {
		return ""
	}
	return v
}

func variantOf(resp, req http.Header) (id string, ok bool) {
	vary := resp["Vary"]
	if len(vary) == 0 {
		return "", false
	}
	var d *xxhash.Digest
	for _, v := range vary {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			if name == "" || strings.EqualFold(name, "Accept-Encoding") || strings.EqualFold(name, "Origin") {
				continue
			}
			if name == "*" {
				return "*", false
			}
			if d == nil {
				d = xxhash.New()
			}
			name = http.CanonicalHeaderKey(name)
			_, _ = d.WriteString(name)
			_, _ = d.WriteString(":")
			for i, val := range req[name] {
				if i > 0 {
					_, _ = d.WriteString(",")
				}
				_, _ = d.WriteString(strings.TrimSpace(val))
			}
			_, _ = d.WriteString("\n")
		}
	}
	if d == nil {
		return "", false
	}
	return strconv.FormatUint(d.Sum64(), 36), true
}

// update applies change to key's state under the key's write claim, so
// that it cannot overwrite a guarded write's outcome recorded meanwhile.
// Forgetting what was never known stores nothing.
func (h *Handler) update(ctx context.Context, key string, change func(conflict.State) conflict.State) {
	ctx = context.WithoutCancel(ctx)
	lease, snap, err := h.store.Claim(ctx, key, time.Duration(h.LockTimeout))
	if err != nil {
		// Still change what was known: a stale "current" is worse than none.
		if s, found, gerr := h.store.Get(ctx, key); gerr == nil && found {
			_ = h.store.Record(ctx, key, change(s))
		}
		return
	}
	n := change(snap.State)
	if !snap.Found && !n.Deleted && len(n.Superseded) == 0 && !n.Known() {
		lease.Release()
		return
	}
	_ = lease.Commit(ctx, n)
}

// changed forgets the current version of key and supersedes it: something
// new is there (the resource a POST created without a version).
func (h *Handler) changed(ctx context.Context, key string) {
	h.update(ctx, key, conflict.State.Changed)
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
