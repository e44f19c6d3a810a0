// Package caddyconflict is the Caddy glue of caddy-conflict: configuration,
// provisioning and the HTTP handler that learns versions from upstream
// responses and rejects stale writes before they reach the upstream.
//
// Where is the decision made? conflict.Decide. Where is the state kept?
// versioncache. This package only wires them into Caddy.
package caddyconflict

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults and limits of the sub-directives, declared once; the stores
// own their own (versioncache.MinMemoryBytes).
const (
	DefaultKey         = "{http.request.hostport}{http.request.uri.path}"
	DefaultLockTimeout = 10 * time.Second
	DefaultTTL         = 10 * time.Minute
	DefaultCacheSize   = versioncache.DefaultMemoryBytes
	DefaultMaxBody     = 1 << 20
	// DefaultHistorySize bounds the history when `history <n>` gives no size.
	DefaultHistorySize = 16 << 20
	minHistorySize     = 64 << 10
	maxHistoryCount    = 1024
)

// Handler guards writes to the resources behind it against lost updates.
// It learns each resource's current version from upstream responses and
// rejects writes based on an older version with a problem document (RFC
// 9457), before they reach the upstream.
type Handler struct {
	// Methods that are guarded writes. Default: PUT PATCH DELETE.
	Methods []string `json:"methods,omitempty"`
	// Key is the template (placeholders allowed) naming the resource a
	// request addresses. Default: {http.request.hostport}{http.request.uri.path}
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
	// HistoryScope is a template (e.g. {http.auth.user.id}) that keeps the
	// history's representations per scope: changes, current and merge auto
	// only use representations the same scope read or wrote, while versions
	// and write locks stay per key.
	HistoryScope string `json:"history_scope,omitempty"`
	// IncludeCurrent adds the current representation to stale-version
	// problems (needs History).
	IncludeCurrent bool `json:"include_current,omitempty"`
	// Merge is "auto" to rebase stale JSON writes whose changes do not
	// overlap the changes since their base (needs History).
	Merge string `json:"merge,omitempty"`
	// HandleErrors hands rejections to the site's handle_errors routes
	// (as an error with the rejection's status) instead of writing the
	// problem document; {http.conflict.problem.*} hold its members.
	HandleErrors bool `json:"handle_errors,omitempty"`
	// LogKeys adds the key to the Info log lines of rejections and merges
	// (keys may carry user identifiers; Debug lines always have it).
	LogKeys bool `json:"log_keys,omitempty"`
	// MethodOverride judges a POST whose X-HTTP-Method-Override (or
	// X-HTTP-Method, X-Method-Override) names a write method as that write,
	// as the legacy stacks that honour the header treat it. Default true.
	MethodOverride *bool `json:"method_override,omitempty"`

	methods     map[string]bool
	normalize   [600]bool
	scheme      conflict.Scheme
	pointer     conflict.Pointer
	policy      conflict.Policy
	hint        string // how to send a precondition, for 428 answers
	keyHasQuery bool
	defaultKey  bool
	keyTemplate string // Key with normalized host and path placeholders (keyOf)
	keyUses     int
	report      bool
	poolKey     string
	history     *versioncache.History
	// reps is where representations are recorded and looked up: the
	// shared history with a Redis store (history is then its near-cache),
	// else history itself.
	reps               versioncache.Representations
	historyPoolKey     string
	store              versioncache.Store
	rejectOnStoreError bool
	methodOverride     bool
	cors               *corsMemory
	events             *caddyevents.App
	ctx                caddy.Context
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

// Provision sets defaults and opens the version table.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.ctx = ctx
	// Only a configured events app has subscribers (events { on ... });
	// without one nothing could observe the events.
	if app, err := ctx.AppIfConfigured("events"); err == nil {
		h.events, _ = app.(*caddyevents.App)
	}
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
	h.keyTemplate, h.keyUses = keyTemplateOf(h.Key)
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
	h.methodOverride = h.MethodOverride == nil || *h.MethodOverride
	h.cors = new(corsMemory)
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
		HeaderVersions:      h.scheme == conflict.SchemeHeader,
	}
	h.hint = conflict.PreconditionHint(h.scheme, h.Version.Field, h.Version.Pointer)

	if err := h.openStore(ctx); err != nil {
		return err
	}
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
	if h.CacheSize < 0 || (h.CacheSize > 0 && h.CacheSize < versioncache.MinMemoryBytes) {
		return fmt.Errorf("conflict: cache_size: must be at least %s, got %d bytes",
			sizeText(versioncache.MinMemoryBytes), h.CacheSize)
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

// The Caddy events the handler emits (caddy.events): their data has the
// key, and the kind and status of a rejection, the action of a store error.
const (
	eventRejected   = "conflict_rejected"
	eventMerged     = "conflict_merged"
	eventStoreError = "conflict_store_error"
)

// emit sends a Caddy event when something can observe it.
func (h *Handler) emit(name string, data map[string]any) {
	if h.events != nil && h.events.ShouldEmit(name) {
		h.events.Emit(h.ctx, name, data)
	}
}

// sizeText writes a size as the Caddyfile takes it (64KiB).
func sizeText(n int64) string {
	for _, u := range [...]struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
