package caddyconflict

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// This file is the glue of the merge help (README "Helping the client
// merge"): the `history`, `include_current` and `merge` sub-directives,
// the extension members of stale-version problems, and the rebase of stale
// writes. Representations are recorded in history.go; the merge logic is
// in conflict/, the history itself in versioncache/.

// mergePatchType is the media type of an RFC 7396 merge patch.
const mergePatchType = "application/merge-patch+json"

// HistoryConfig is the `history <n> [<size>]` sub-directive: per key the last
// Count JSON representations seen in upstream responses, all of them within
// Size bytes.
type HistoryConfig struct {
	// Count is the number of representations kept per key (the current one
	// included).
	Count int `json:"count,omitempty"`
	// Size bounds the memory of the whole history, in bytes. Default 16 MiB.
	Size int64 `json:"size,omitempty"`
}

// validateMerge checks history, include_current and merge.
func (h *Handler) validateMerge() error {
	if h.History != nil {
		if h.History.Count < 1 || h.History.Count > maxHistoryCount {
			return fmt.Errorf("conflict: history: the number of representations per key must be 1 to %d, got %d",
				maxHistoryCount, h.History.Count)
		}
		if h.History.Size < 0 || (h.History.Size > 0 && h.History.Size < minHistorySize) {
			return fmt.Errorf("conflict: history: size must be at least %s, got %d bytes",
				sizeText(minHistorySize), h.History.Size)
		}
	}
	if h.HistoryScope != "" && h.History == nil {
		return fmt.Errorf("conflict: history_scope: needs history (it scopes the history's representations)")
	}
	if h.IncludeCurrent && h.History == nil {
		return fmt.Errorf("conflict: include_current: needs history (the current representation comes from it)")
	}
	switch h.Merge {
	case "":
	case "auto":
		if h.History == nil {
			return fmt.Errorf("conflict: merge: auto needs history (the rebase compares representations from it)")
		}
	default:
		return fmt.Errorf("conflict: merge: must be auto, got %q", h.Merge)
	}
	return nil
}

// versionPointer is the `version json` pointer, nil for other sources.
func (h *Handler) versionPointer() conflict.Pointer {
	if h.scheme == conflict.SchemeJSON {
		return h.pointer
	}
	return nil
}

// historyKey is where the representations of key are kept for the
// request's history_scope: per scope (a caller) when one is configured, so
// that merge help never shows one caller what another read; the version
// and the write lock stay per key.
func (h *Handler) historyKey(key string, repl *caddy.Replacer) string {
	if h.HistoryScope == "" {
		return key
	}
	scope := ""
	if repl != nil {
		scope = repl.ReplaceAll(h.HistoryScope, "")
	}
	return key + "\x00" + scope
}

// dropHistory forgets every representation of key, in every scope: the
// resource was deleted (a new one may restart its versions) or purged.
// With a shared history, in Redis and in every node's near-cache too.
func (h *Handler) dropHistory(key string) {
	if h.history != nil {
		h.representations().DropKey(context.Background(), key)
	}
}

// claimedVersion is the one version a claim names (an If-Unmodified-Since
// date as Last-Modified would show it). A list of versions names no single
// base to merge from.
func claimedVersion(c conflict.Precondition) (string, bool) {
	switch {
	case c.Kind == conflict.PreconditionVersions && len(c.Versions) == 1:
		return c.Versions[0], true
	case c.Kind == conflict.PreconditionDate:
		return c.Date.UTC().Format(http.TimeFormat), true
	}
	return "", false
}

// representations finds the representation of the version a stale write
// claimed (the first of its versions the history holds) and the current
// one. With a shared history this is one lookup: the node's near-cache,
// then Redis (one round trip) for what it lacks; Redis down, the
// near-cache's answer stands (no changes, never an error).
func (x *exchange) representations() (base []byte, claimed string, current []byte) {
	var versions []string
	if v, ok := claimedVersion(x.pre); ok {
		versions = []string{v}
	} else {
		versions = append(versions, x.pre.Versions...)
	}
	all := x.h.representations().Lookup(x.r.Context(), x.hkey, append(versions, x.state.Version)...)
	current = all[len(versions)]
	for i, v := range versions {
		if all[i] != nil {
			return all[i], v, current
		}
	}
	return nil, "", current
}

// mergeable reports whether r is a write the proxy can rebase: a PATCH
// with a merge patch or a PUT of JSON, not content-encoded.
func mergeable(r *http.Request) (patch, ok bool) {
	if r.Body == nil || r.Body == http.NoBody || r.Header.Get("Content-Encoding") != "" {
		return false, false
	}
	ct := r.Header.Get("Content-Type")
	switch r.Method {
	case http.MethodPatch:
		mt, _, err := mime.ParseMediaType(ct)
		return true, err == nil && mt == mergePatchType
	case http.MethodPut:
		return false, isJSON(ct)
	}
	return false, false
}

// rebaseWrite computes the rebase of r's body from base onto theirs.
func (h *Handler) rebaseWrite(r *http.Request, base, theirs []byte) (conflict.Rebase, bool) {
	patch, ok := mergeable(r)
	if !ok {
		return conflict.Rebase{}, false
	}
	mine, complete, err := readUpTo(r, h.MaxBody)
	if err != nil || !complete {
		return conflict.Rebase{}, false
	}
	var rb conflict.Rebase
	if patch {
		rb, err = conflict.RebasePatch(base, theirs, mine, h.versionPointer())
	} else {
		rb, err = conflict.RebaseDocument(base, theirs, mine, h.versionPointer())
	}
	return rb, err == nil
}

// rebase is called with the key's write claim held when a write is about
// to be rejected as stale. It makes sure the history holds the current
// representation (asking the upstream if it does not), and with `merge
// auto` rebases a write whose changes do not overlap the changes since its
// base: the request is rewritten to the merged write based on the current
// version, and rebase reports true. Otherwise the write is rejected as
// before, and the problem gets the merge help (mergeHelp).
func (x *exchange) rebase() bool {
	h, r, key, s, c := x.h, x.r, x.hkey, x.state, x.pre
	if h.history == nil || h.report || !s.Known() {
		return false
	}
	base, claimed, theirs := x.representations()
	haveBase := base != nil
	if !haveBase && !h.IncludeCurrent {
		return false
	}
	if theirs == nil {
		var ok bool
		if theirs, ok = h.fetchRepresentation(r, x.next, key, s.Version); !ok {
			return false
		}
		h.representations().Add(key, s.Version, theirs) // shared: for the other nodes (queued)
	}
	if h.Merge != "auto" || !haveBase {
		return false
	}
	if _, single := claimedVersion(c); !single {
		return false
	}
	rb, ok := h.rebaseWrite(r, base, theirs)
	if !ok || len(rb.Conflicts) > 0 {
		return false
	}

	// Forward the rebased write, based on the current version.
	r.Body = readCloser{bytes.NewReader(rb.Body), r.Body} // closing it closes the client's body
	r.ContentLength = int64(len(rb.Body))
	r.TransferEncoding = nil
	r.Header.Set("Content-Length", strconv.Itoa(len(rb.Body)))
	body := rb.Body
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	if c.Source != "" && !strings.HasPrefix(c.Source, "body ") {
		r.Header.Set(c.Source, s.Version) // If-Match, If-Unmodified-Since or the version header
	}
	merged := conflict.Quote(claimed) + " -> " + conflict.Quote(s.Version)
	x.w.Header().Set("Conflict-Merged", merged)
	x.merged = true
	setPlaceholders(x.repl, "merged", quoteOrEmpty(s.Version))
	countDecision("merged")
	if ce := h.logger.Check(zap.InfoLevel, "stale write merged"); ce != nil {
		f := []zap.Field{zap.String("method", r.Method), zap.String("claimed", claimed), zap.String("current_version", s.Version)}
		if h.LogKeys {
			f = append(f, zap.String("key", x.key))
		}
		ce.Write(f...)
	}
	h.emit(eventMerged, map[string]any{"key": x.key, "method": r.Method, "claimed": conflict.Quote(claimed),
		"current_version": conflict.Quote(s.Version)})
	return true
}

// mergeHelp adds to a stale-version problem what changed since the
// client's version, when the history holds both representations:
// changed_paths and changes (an RFC 7396 merge patch from the client's
// version to the current one), with `merge auto` the conflicting_paths
// that kept the write from being rebased, and with include_current the
// current representation.
func (x *exchange) mergeHelp(p *conflict.Problem) {
	h, r, s, c := x.h, x.r, x.state, x.pre
	if h.history == nil || !s.Known() {
		return
	}
	claimed, _, current := x.representations()
	if current == nil {
		return
	}
	if claimed != nil {
		if help, err := conflict.Explain(claimed, current); err == nil {
			_ = p.Set("changed_paths", help.ChangedPaths)
			_ = p.SetRaw("changes", help.Changes)
			if _, single := claimedVersion(c); h.Merge == "auto" && single {
				if rb, ok := h.rebaseWrite(r, claimed, current); ok && len(rb.Conflicts) > 0 {
					_ = p.Set("conflicting_paths", rb.Conflicts)
				}
			}
		}
	}
	if h.IncludeCurrent {
		_ = p.SetRaw("current", current)
	}
}
