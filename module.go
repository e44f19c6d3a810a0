// Package caddyconflict is the Caddy glue of caddy-conflict: configuration,
// provisioning and the HTTP handler that learns versions from upstream
// responses and rejects stale writes before they reach the upstream.
//
// Where is the decision made? conflict.Decide. Where is the state kept?
// versioncache. This package only wires them into Caddy.
package caddyconflict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the sub-directives.
const (
	DefaultKey         = "{http.request.host}{http.request.uri.path}"
	DefaultLockTimeout = 10 * time.Second
	DefaultTTL         = 10 * time.Minute
	DefaultCacheSize   = 64 << 20
	DefaultMaxBody     = 1 << 20
)

// Handler guards writes to the resources behind it against lost updates.
// It learns each resource's current version from upstream responses and
// rejects writes based on an older version with a problem document (RFC
// 9457), before they reach the upstream.
type Handler struct {
	// Methods that are guarded writes. Default: PUT PATCH DELETE.
	Methods []string `json:"methods,omitempty"`
	// Key is the template (placeholders allowed) naming the resource a
	// request addresses. Default: {http.request.host}{http.request.uri.path}
	// with the host lower-cased and the path cleaned.
	Key string `json:"key,omitempty"`
	// Version says where versions come from. Default: the ETag header.
	Version *VersionSource `json:"version,omitempty"`
	// Require is "precondition" to answer guarded writes that carry no
	// precondition with 428 Precondition Required.
	Require string `json:"require,omitempty"`
	// StaleStatus is the status of stale-version and deleted rejections:
	// 409 (default) or 412.
	StaleStatus int `json:"stale_status,omitempty"`
	// LockTimeout is how long a write waits behind an in-flight write to the
	// same key before it gets a write-in-progress 409. Default 10s.
	LockTimeout caddy.Duration `json:"lock_timeout,omitempty"`
	// TTL is how long a learned version is trusted. Default 10m.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// CacheSize bounds the memory of the in-process version table, in bytes.
	// Default 64 MiB.
	CacheSize int64 `json:"cache_size,omitempty"`
	// Normalize lists the upstream statuses rewritten into problem+json.
	// Default [409]; an empty list (in JSON: [0]) turns the rewrite off.
	Normalize []int `json:"normalize,omitempty"`
	// ProblemBase is the prefix of the problem "type" URIs.
	ProblemBase string `json:"problem_base,omitempty"`
	// MaxBody is the largest body buffered, in bytes. Default 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`
	// Mode is "enforce" (default) or "report" (decide and log, never reject).
	Mode string `json:"mode,omitempty"`
	// Preflight asks the upstream for the version (HEAD, then GET) before
	// deciding on a write to a key whose version is unknown.
	Preflight bool `json:"preflight,omitempty"`
	// Verify confirms with a fresh upstream read that the version moved
	// before a stale-version rejection is sent.
	Verify bool `json:"verify,omitempty"`
	// StoreRaw selects the version table: memory (default) or redis.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.handlers.conflict.stores inline_key=type"`
	// Guards are relations between resources that writes must not break
	// (`guard parent`, `guard children`, `guard reference`); see guards.go.
	Guards []Guard `json:"guards,omitempty"`
	// History keeps per key the last JSON representations seen, so that a
	// stale-version problem can say what changed since the client's
	// version; see merge.go. Off by default.
	History *HistoryConfig `json:"history,omitempty"`
	// IncludeCurrent adds the current representation to stale-version
	// problems (needs History).
	IncludeCurrent bool `json:"include_current,omitempty"`
	// Merge is "auto" to rebase stale JSON writes whose changes do not
	// overlap the changes since their base (needs History).
	Merge string `json:"merge,omitempty"`

	methods            map[string]bool
	normalize          [600]bool
	scheme             conflict.Scheme
	pointer            conflict.Pointer
	policy             conflict.Policy
	keyHasQuery        bool
	defaultKey         bool
	report             bool
	poolKey            string
	history            *versioncache.History
	historyPoolKey     string
	store              versioncache.Store
	rejectOnStoreError bool
	logger             *zap.Logger
}

// VersionSource is the `version` sub-directive.
type VersionSource struct {
	// Source is one of etag, last_modified, header, json, hash.
	Source string `json:"source"`
	// Field is the header name for source "header".
	Field string `json:"field,omitempty"`
	// Pointer is the RFC 6901 JSON pointer for source "json".
	Pointer string `json:"pointer,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.conflict",
		New: func() caddy.Module { return new(Handler) },
	}
}

// stores keeps version tables across config reloads: a reload provisions
// the new handler before the old one is cleaned up, so the table is shared.
var stores = caddy.NewUsagePool()

type pooledStore struct {
	versioncache.Store
}

func (p pooledStore) Destruct() error { return p.Store.Close() }

// Provision sets defaults and opens the version table.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	if len(h.Methods) == 0 {
		h.Methods = []string{http.MethodPut, http.MethodPatch, http.MethodDelete}
	}
	h.methods = make(map[string]bool, len(h.Methods))
	for _, m := range h.Methods {
		h.methods[strings.ToUpper(m)] = true
	}
	if h.Key == "" {
		h.Key = DefaultKey
	}
	h.defaultKey = h.Key == DefaultKey
	h.keyHasQuery = strings.Contains(h.Key, "query") || strings.Contains(h.Key, "{http.request.uri}") ||
		strings.Contains(h.Key, "{uri}")
	if h.Version == nil {
		h.Version = &VersionSource{Source: "etag"}
	}
	if h.StaleStatus == 0 {
		h.StaleStatus = http.StatusConflict
	}
	if h.LockTimeout == 0 {
		h.LockTimeout = caddy.Duration(DefaultLockTimeout)
	}
	if h.TTL == 0 {
		h.TTL = caddy.Duration(DefaultTTL)
	}
	if h.CacheSize == 0 {
		h.CacheSize = DefaultCacheSize
	}
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	if h.Normalize == nil {
		h.Normalize = []int{http.StatusConflict}
	}
	for _, s := range h.Normalize {
		if s >= 400 && s < len(h.normalize) {
			h.normalize[s] = true
		}
	}
	if h.ProblemBase == "" {
		h.ProblemBase = conflict.DefaultProblemBase
	}
	if h.Mode == "" {
		h.Mode = "enforce"
	}
	h.report = h.Mode == "report"
	if err := h.Validate(); err != nil {
		return err
	}
	h.provisionGuards()
	switch h.Version.Source {
	case "etag":
		h.scheme = conflict.SchemeETag
	case "last_modified":
		h.scheme = conflict.SchemeLastModified
	case "header":
		h.scheme = conflict.SchemeHeader
		h.Version.Field = http.CanonicalHeaderKey(h.Version.Field)
	case "json":
		h.scheme = conflict.SchemeJSON
		h.pointer, _ = conflict.ParsePointer(h.Version.Pointer)
	case "hash":
		h.scheme = conflict.SchemeHash
	}
	h.policy = conflict.Policy{
		RequirePrecondition: h.Require == "precondition",
		StaleStatus:         h.StaleStatus,
		Dates:               h.scheme == conflict.SchemeLastModified,
	}

	var mod StoreModule = MemoryStore{}
	if h.StoreRaw != nil {
		m, err := ctx.LoadModule(h, "StoreRaw")
		if err != nil {
			return fmt.Errorf("conflict: store: %w", err)
		}
		mod = m.(StoreModule)
	}
	if p, ok := mod.(StoreErrorPolicy); ok {
		h.rejectOnStoreError = p.RejectOnError()
	}
	// Versions of different sources mean different things: a table is
	// shared only by handlers that read versions alike.
	opts := StoreOptions{
		CacheSize: h.CacheSize,
		TTL:       time.Duration(h.TTL),
		Namespace: h.Version.Source + "|" + h.Version.Field + "|" + h.Version.Pointer,
	}
	key := mod.PoolKey(opts)
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := mod.OpenStore(ctx, opts)
		if err != nil {
			return nil, err
		}
		return pooledStore{s}, nil
	})
	if err != nil {
		return fmt.Errorf("conflict: store: %w", err)
	}
	h.poolKey = key
	h.store = val.(pooledStore).Store
	return h.provisionHistory()
}

// Validate checks the configuration; each error names the sub-directive.
func (h *Handler) Validate() error {
	for _, m := range h.Methods {
		if m == "" || strings.ContainsAny(m, " \t\r\n()<>@,;:\\\"/[]?={}") {
			return fmt.Errorf("conflict: methods: %q is not a method name", m)
		}
		switch strings.ToUpper(m) {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodConnect:
			return fmt.Errorf("conflict: methods: %s is not a write", m)
		}
	}
	if h.Version != nil {
		switch h.Version.Source {
		case "etag", "last_modified", "hash":
		case "header":
			if h.Version.Field == "" || strings.ContainsAny(h.Version.Field, " \t\r\n:") {
				return fmt.Errorf("conflict: version: header needs a header field name, got %q", h.Version.Field)
			}
		case "json":
			if _, err := conflict.ParsePointer(h.Version.Pointer); err != nil || h.Version.Pointer == "" {
				return fmt.Errorf("conflict: version: json needs an RFC 6901 pointer such as /version, got %q", h.Version.Pointer)
			}
		default:
			return fmt.Errorf("conflict: version: unknown source %q (etag, last_modified, header, json or hash)", h.Version.Source)
		}
	}
	if h.Require != "" && h.Require != "precondition" {
		return fmt.Errorf("conflict: require: unknown value %q (precondition)", h.Require)
	}
	if h.StaleStatus != 0 && h.StaleStatus != http.StatusConflict && h.StaleStatus != http.StatusPreconditionFailed {
		return fmt.Errorf("conflict: stale_status: must be 409 or 412, got %d", h.StaleStatus)
	}
	if h.LockTimeout < 0 {
		return fmt.Errorf("conflict: lock_timeout: must not be negative")
	}
	if h.TTL < 0 {
		return fmt.Errorf("conflict: ttl: must not be negative")
	}
	if h.CacheSize < 0 || (h.CacheSize > 0 && h.CacheSize < 64<<10) {
		return fmt.Errorf("conflict: cache_size: must be at least 64KiB, got %d bytes", h.CacheSize)
	}
	if h.MaxBody < 0 {
		return fmt.Errorf("conflict: max_body: must not be negative")
	}
	for _, s := range h.Normalize {
		if s != 0 && (s < 400 || s > 599) {
			return fmt.Errorf("conflict: normalize: %d is not a 4xx or 5xx status", s)
		}
	}
	if h.ProblemBase != "" {
		if _, err := url.Parse(h.ProblemBase); err != nil {
			return fmt.Errorf("conflict: problem_base: %w", err)
		}
	}
	if h.Mode != "" && h.Mode != "enforce" && h.Mode != "report" {
		return fmt.Errorf("conflict: mode: must be enforce or report, got %q", h.Mode)
	}
	if err := h.validateGuards(); err != nil {
		return err
	}
	if err := h.validateMerge(); err != nil {
		return err
	}
	return nil
}

// Cleanup releases the version table; the last handler using it closes it.
func (h *Handler) Cleanup() error {
	herr := h.cleanupHistory()
	if h.poolKey == "" {
		return herr
	}
	_, err := stores.Delete(h.poolKey)
	return errors.Join(err, herr)
}

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

// serveWrite decides on a guarded write and, if it may pass, forwards it
// while holding the key's write claim, then records its outcome.
func (h *Handler) serveWrite(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string, repl *caddy.Replacer) (err error) {
	ctx := r.Context()
	claim, perr := conflict.ParsePrecondition(r.Header, h.scheme, fieldOf(h.Version))
	if perr != nil {
		if p := h.reject(w, r, key, repl, conflict.KindInvalidPrecondition, http.StatusBadRequest, perr.Error(), conflict.State{}, claim); p {
			return nil
		}
		claim = conflict.Precondition{}
	}
	if claim.Kind == conflict.PreconditionNone && h.scheme == conflict.SchemeJSON {
		c, kind, status, detail := h.bodyClaim(r)
		if kind != "" && h.policy.RequirePrecondition {
			h.reject(w, r, key, repl, kind, status, detail, conflict.State{}, c)
			if !h.report {
				return nil
			}
		}
		claim = c
	}

	lease, snap, cerr := h.claim(ctx, key)
	switch {
	case errors.Is(cerr, versioncache.ErrClaimTimeout):
		if h.reject(w, r, key, repl, conflict.KindWriteInProgress, http.StatusConflict,
			"Another write to this resource is in progress; retry shortly.", snap.State, claim) {
			return nil
		}
		_, err = h.forward(w, r, next)
		return err
	case cerr != nil:
		if ctx.Err() != nil {
			setPlaceholders(repl, "aborted", "")
			return caddyhttp.Error(499, ctx.Err())
		}
		// The shared store cannot be reached (SPEC "Scaling out"):
		// on_store_error says whether the write is rejected or passes
		// unchecked.
		if h.rejectOnStoreError && h.reject(w, r, key, repl, conflict.KindStoreUnavailable, http.StatusServiceUnavailable,
			"The version store cannot be reached, so this write cannot be checked; retry shortly.", conflict.State{}, claim) {
			countStoreError("rejected")
			return nil
		}
		countStoreError("forwarded")
		countDecision("forwarded")
		setPlaceholders(repl, "forwarded", "")
		if ce := h.logger.Check(zap.DebugLevel, "write forwarded unchecked: version store unavailable"); ce != nil {
			ce.Write(zap.String("key", key), zap.String("method", r.Method), zap.Error(cerr))
		}
		_, err = h.forward(w, r, next)
		return err
	}

	state := snap.State
	committed := false
	release := func(s conflict.State) {
		if !committed {
			committed = true
			if err := lease.Commit(context.WithoutCancel(ctx), s); err != nil {
				// The claim is left to its lease (or was lost): the next
				// write finds the key uncertain and re-reads it.
				h.logger.Warn("recording a write's outcome failed", zap.String("key", key), zap.Error(err))
			}
		}
	}
	defer func() {
		// Whatever ends the exchange (a panic such as http.ErrAbortHandler
		// included), the claim is released; an unseen outcome is uncertain.
		if !committed {
			s := state
			s.Uncertain = true
			release(s)
		}
	}()

	// An uncertain key, or one whose record was dropped after a write, is
	// re-read before deciding, so that an unseen outcome cannot let a stale
	// write through.
	mustReread := state.Uncertain || (!snap.Found && snap.Recent)
	if mustReread || (h.Preflight && !state.Known() && !state.Deleted) {
		if s, ok := h.rereadFor(rereadReason(mustReread), r, next, state); ok {
			state = s
		} else if mustReread {
			state.Uncertain = true
			release(state)
			h.reject(w, r, key, repl, conflict.KindUpstreamUnavailable, http.StatusBadGateway,
				"The outcome of an earlier write to this resource is unknown and the upstream could not be asked for its current version.",
				state, claim)
			return nil
		}
	}

	if kind, related := h.checkGuards(r, next, key, state); kind != "" {
		if h.reject(w, r, key, repl, kind, http.StatusConflict, guardDetail(kind, related), state, claim, related...) {
			release(state)
			return nil
		}
	}

	d := conflict.Decide(state, claim, h.policy)
	if !d.Forward() && h.Verify && (d.Kind == conflict.KindStaleVersion || d.Kind == conflict.KindDeleted) {
		if s, ok := h.rereadFor(rereadVerify, r, next, state); ok {
			state = s
			d = conflict.Decide(state, claim, h.policy)
		}
	}
	if d.Kind == conflict.KindStaleVersion && h.history != nil && h.rebase(w, r, next, key, repl, state, claim) {
		d = conflict.Decision{} // rebased onto the current version (merge auto): forwarded as merged
	}
	if !d.Forward() {
		detail := detailFor(d.Kind, claim, h.Version)
		if h.reject(w, r, key, repl, d.Kind, d.Status, detail, state, claim) {
			release(state)
			return nil
		}
	} else if w.Header().Get("Conflict-Report") == "" && w.Header().Get("Conflict-Merged") == "" { // else reported or merged
		setPlaceholders(repl, "forwarded", quoteOrEmpty(state.Version))
		countDecision("forwarded")
		if ce := h.logger.Check(zap.DebugLevel, "write forwarded"); ce != nil {
			ce.Write(zap.String("key", key), zap.String("method", r.Method),
				zap.String("current_version", state.Version), zap.Strings("claimed", claim.Versions))
		}
	}

	based := basedOn(state, claim)
	ow, err := h.forward(w, r, next)
	result := conflict.WriteResult{Method: r.Method, Status: ow.status, Version: ow.version}
	if r.Method == http.MethodPost {
		result.Version = "" // a POST's version belongs to the resource it created (Location)
	}
	if h.history != nil && err == nil {
		h.rememberWrite(key, r, ow) // before the claim is released: the next write may merge onto it
	}
	release(state.AfterWrite(based, result))
	if r.Method == http.MethodPost && ow.status >= 200 && ow.status < 300 {
		h.learnLocation(ctx, r, ow)
	}
	h.afterGuardedWrite(ctx, r, ow.status)
	return err
}

func fieldOf(v *VersionSource) string {
	if v == nil {
		return ""
	}
	return v.Field
}

// basedOn is the version a write was based on: the current version when it
// was decided, if known, else the versions the client claimed.
func basedOn(s conflict.State, c conflict.Precondition) []string {
	if s.Known() {
		return []string{s.Version}
	}
	if c.Kind == conflict.PreconditionVersions {
		return c.Versions
	}
	return nil
}

// reject answers a write with a problem document, or in report mode marks
// the response and lets the write through. It reports whether the request
// was answered.
func (h *Handler) reject(w http.ResponseWriter, r *http.Request, key string, repl *caddy.Replacer,
	kind conflict.Kind, status int, detail string, s conflict.State, c conflict.Precondition, related ...string) bool {
	if repl != nil {
		repl.Set("http.conflict.current_version", quoteOrEmpty(s.Version))
	}
	if h.report {
		if w.Header().Get("Conflict-Report") == "" {
			countDecision("reported") // once per write, however many rules it breaks
		}
		w.Header().Set("Conflict-Report", string(kind))
		if repl != nil {
			repl.Set("http.conflict.outcome", "reported")
		}
		h.logger.Info("write would be rejected (report mode)", zap.String("key", key), zap.String("kind", string(kind)),
			zap.String("method", r.Method), zap.String("current_version", s.Version), zap.Strings("claimed", c.Versions))
		return false
	}
	if repl != nil {
		repl.Set("http.conflict.outcome", string(kind))
	}
	countDecision(string(kind))
	h.logger.Info("write rejected", zap.String("key", key), zap.String("kind", string(kind)), zap.Int("status", status),
		zap.String("method", r.Method), zap.String("current_version", s.Version), zap.Strings("claimed", c.Versions))

	p := conflict.NewProblem(h.ProblemBase, kind, status, detail)
	p.Instance = r.URL.Path
	p.Resource = r.URL.Path
	p.Related = related
	hdr := w.Header()
	switch kind {
	case conflict.KindStaleVersion, conflict.KindAlreadyExists:
		if s.Known() {
			p.CurrentVersion = conflict.Quote(s.Version)
			if h.scheme != conflict.SchemeLastModified {
				hdr.Set("ETag", p.CurrentVersion)
			}
		}
		p.ProvidedVersions = c.Versions
		if c.Kind == conflict.PreconditionDate {
			p.ProvidedVersions = []string{c.Date.UTC().Format(http.TimeFormat)}
		}
		if kind == conflict.KindStaleVersion && h.history != nil {
			h.mergeHelp(p, r, key, s, c)
		}
	case conflict.KindWriteInProgress:
		secs := int(time.Duration(h.LockTimeout).Seconds())
		hdr.Set("Retry-After", strconv.Itoa(max(1, min(secs, 5))))
	case conflict.KindStoreUnavailable:
		hdr.Set("Retry-After", strconv.Itoa(int(versioncache.RedisRetryAfter.Seconds())))
	}
	writeProblem(w, r, p)
	return true
}

func quoteOrEmpty(v string) string {
	if v == "" {
		return ""
	}
	return conflict.Quote(v)
}

// writeProblem sends p as the whole response.
func writeProblem(w http.ResponseWriter, r *http.Request, p *conflict.Problem) {
	body := p.JSON()
	hdr := w.Header()
	hdr.Set("Content-Type", conflict.ContentType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Del("Content-Encoding")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// detailFor is the human sentence of a decision.
func detailFor(kind conflict.Kind, c conflict.Precondition, v *VersionSource) string {
	switch kind {
	case conflict.KindStaleVersion:
		return "The resource was changed since the version this request is based on (" + c.Source +
			"). Fetch the current version, reapply your change and retry."
	case conflict.KindDeleted:
		return "The resource was deleted."
	case conflict.KindAlreadyExists:
		return "The resource already exists (If-None-Match: *)."
	case conflict.KindPreconditionRequired:
		return "This write must say which version it is based on: " + preconditionHint(v) + "."
	}
	return ""
}

func preconditionHint(v *VersionSource) string {
	switch v.Source {
	case "last_modified":
		return "send If-Unmodified-Since with the Last-Modified you read, or If-Match"
	case "header":
		return "send If-Match with the ETag you read, or " + v.Field + " with the version you read"
	case "json":
		return "send If-Match with the ETag you read, or the version you read in the body at " + v.Pointer
	default:
		return "send If-Match with the ETag you read (or If-None-Match: * to create)"
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
