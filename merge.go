package caddyconflict

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

// This file is the glue of the merge help (SPEC "Helping the client
// merge"): the `history`, `include_current` and `merge` sub-directives,
// recording representations as responses stream by, the extension members
// of stale-version problems, and the rebase of stale writes. The merge
// logic itself is in conflict/merge.go, the history in
// versioncache/history.go.

// DefaultHistorySize bounds the history when `history <n>` gives no size.
const DefaultHistorySize = 16 << 20

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

// pooledHistory keeps a history in the stores pool, so that a reload keeps
// it like the version table.
type pooledHistory struct {
	*versioncache.History
}

func (p pooledHistory) Destruct() error { return p.History.Close() }

// validateMerge checks history, include_current and merge.
func (h *Handler) validateMerge() error {
	if h.History != nil {
		if h.History.Count < 1 || h.History.Count > 1024 {
			return fmt.Errorf("conflict: history: the number of representations per key must be 1 to 1024, got %d", h.History.Count)
		}
		if h.History.Size < 0 || (h.History.Size > 0 && h.History.Size < 64<<10) {
			return fmt.Errorf("conflict: history: size must be at least 64KiB, got %d bytes", h.History.Size)
		}
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

// provisionHistory opens (or shares) the history. Like the version table
// it is shared by handlers that read versions alike and survives reloads.
func (h *Handler) provisionHistory() error {
	if h.History == nil {
		return nil
	}
	size := h.History.Size
	if size == 0 {
		size = DefaultHistorySize
	}
	key := fmt.Sprintf("history|%d|%d|%s|%s|%s", h.History.Count, size,
		h.Version.Source, h.Version.Field, h.Version.Pointer)
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledHistory{versioncache.NewHistory(h.History.Count, size)}, nil
	})
	if err != nil {
		return fmt.Errorf("conflict: history: %w", err)
	}
	h.historyPoolKey = key
	h.history = val.(pooledHistory).History
	return nil
}

// cleanupHistory releases the history; the last handler using it drops it.
func (h *Handler) cleanupHistory() error {
	if h.historyPoolKey == "" {
		return nil
	}
	_, err := stores.Delete(h.historyPoolKey)
	h.historyPoolKey = ""
	return err
}

// versionPointer is the `version json` pointer, nil for other sources.
func (h *Handler) versionPointer() conflict.Pointer {
	if h.scheme == conflict.SchemeJSON {
		return h.pointer
	}
	return nil
}

// ---- recording representations ----

// recordInto returns the writer to forward r's response through: with
// history on, a tee that copies a JSON response body (up to max_body) as it
// streams to the client, and, for a JSON write, a copy of the request body
// the upstream reads. Otherwise w itself: the read path costs nothing when
// history is off.
func (h *Handler) recordInto(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	write := h.methods[r.Method] && (r.Method == http.MethodPut || r.Method == http.MethodPatch)
	if h.history == nil || (r.Method != http.MethodGet && !write) ||
		(r.URL.RawQuery != "" && !h.keyHasQuery) {
		return w
	}
	t := &representationTee{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, write: write}
	if write {
		if r.Body == nil || r.Body == http.NoBody || !isJSON(r.Header.Get("Content-Type")) ||
			r.Header.Get("Content-Encoding") != "" {
			return w
		}
		t.request = &requestTee{ReadCloser: r.Body, limit: h.MaxBody}
		r.Body = t.request
	}
	return t
}

// representationTee copies a 200 (or, to a write, 201) JSON response body
// up to max_body while it streams on; it never holds the response.
type representationTee struct {
	caddyhttp.ResponseWriterWrapper
	h        *Handler
	write    bool
	status   int
	encoding string
	buf      *bytes.Buffer // nil: not copying (any more)
	request  *requestTee
}

func (t *representationTee) WriteHeader(status int) {
	if status >= 200 && t.status == 0 {
		t.status = status
		hdr := t.ResponseWriter.Header()
		enc := hdr.Get("Content-Encoding")
		if (status == http.StatusOK || (t.write && status == http.StatusCreated)) &&
			isJSON(hdr.Get("Content-Type")) && (enc == "" || enc == "identity" || enc == "gzip") {
			t.encoding = enc
			t.buf = bufPool.Get().(*bytes.Buffer)
			t.buf.Reset()
		}
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *representationTee) Write(p []byte) (int, error) {
	if t.status == 0 {
		t.WriteHeader(http.StatusOK)
	}
	if t.buf != nil {
		if int64(t.buf.Len()+len(p)) > t.h.MaxBody {
			t.release() // too large to keep: stream on
		} else {
			t.buf.Write(p)
		}
	}
	return t.ResponseWriter.Write(p)
}

func (t *representationTee) ReadFrom(r io.Reader) (int64, error) {
	if t.status == 0 {
		t.WriteHeader(http.StatusOK)
	}
	if t.buf != nil {
		return io.Copy(writerOnly{t}, r)
	}
	return t.ResponseWriterWrapper.ReadFrom(r)
}

func (t *representationTee) FlushError() error {
	return http.NewResponseController(t.ResponseWriter).Flush()
}

// body returns the copied representation, decoded, or nil.
func (t *representationTee) body() []byte {
	if t.buf == nil {
		return nil
	}
	if t.encoding != "gzip" {
		return t.buf.Bytes()
	}
	zr, err := gzip.NewReader(bytes.NewReader(t.buf.Bytes()))
	if err != nil {
		return nil
	}
	out, err := io.ReadAll(io.LimitReader(zr, t.h.MaxBody+1))
	if err != nil || int64(len(out)) > t.h.MaxBody {
		return nil
	}
	return out
}

func (t *representationTee) release() {
	if t.buf != nil && t.buf.Cap() <= 64<<10 {
		bufPool.Put(t.buf)
	}
	t.buf = nil
}

// requestTee copies a write's body (up to max_body) as the upstream reads
// it.
type requestTee struct {
	io.ReadCloser
	buf      bytes.Buffer
	limit    int64
	overflow bool
}

func (t *requestTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 && !t.overflow {
		if int64(t.buf.Len()+n) > t.limit {
			t.overflow = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	return n, err
}

// teeOf finds the tee recordInto put under an observer.
func teeOf(ow *observer) *representationTee {
	t, _ := ow.ResponseWriter.(*representationTee)
	return t
}

// remember records the representation a GET returned under its version.
func (h *Handler) remember(key string, ow *observer) {
	t := teeOf(ow)
	if t == nil {
		return
	}
	defer t.release()
	if ow.status != http.StatusOK || ow.version == "" {
		return
	}
	if body := t.body(); body != nil {
		h.history.Add(key, ow.version, body)
	}
}

// rememberWrite records the representation a PUT or PATCH response carries
// under the new version. Only a response that echoes the write is taken
// as the representation: a status body such as {"ok":true} is not one. It
// runs before the write claim is released, so the next write to the key
// finds it.
func (h *Handler) rememberWrite(key string, r *http.Request, ow *observer) {
	t := teeOf(ow)
	if t == nil {
		return
	}
	defer t.release()
	if ow.status < 200 || ow.status >= 300 || ow.version == "" || t.request == nil || t.request.overflow {
		return
	}
	body := t.body()
	if body != nil && conflict.Echoes(body, t.request.buf.Bytes(), h.versionPointer()) {
		h.history.Add(key, ow.version, body)
	}
}

// fetchRepresentation asks the upstream (through the rest of the chain, as
// reread does) for key's representation and returns it if it is the one
// of version. It runs under the key's write claim, when a stale write meets
// a current version whose representation the history does not hold.
func (h *Handler) fetchRepresentation(r *http.Request, next caddyhttp.Handler, key, version string) ([]byte, bool) {
	req := readRequest(r, http.MethodGet)
	if h.scheme == conflict.SchemeHeader {
		req.Header.Del(h.Version.Field)
	}
	req.Header.Set("Accept-Encoding", "identity")
	cw := &capture{header: make(http.Header), body: new(bytes.Buffer), limit: h.MaxBody}
	if err := next.ServeHTTP(cw, req); err != nil {
		return nil, false // no answer, or a body cut short
	}
	if cw.status != http.StatusOK && cw.status != 0 || cw.overflow || cw.header.Get("Content-Encoding") != "" ||
		!isJSON(cw.header.Get("Content-Type")) {
		return nil, false
	}
	body := cw.body.Bytes()
	v := h.versionOf(cw.header)
	if h.bodyVersions() {
		v = h.versionOfBody(cw.header, body)
	}
	if v == "" {
		return nil, false
	}
	h.history.Add(key, v, body)
	return body, conflict.SameVersion(v, version)
}

// ---- stale writes ----

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

// claimedRepresentation finds the representation of the version a stale
// write claimed: the first of its versions the history holds.
func (h *Handler) claimedRepresentation(key string, c conflict.Precondition) ([]byte, string, bool) {
	if v, ok := claimedVersion(c); ok {
		b, found := h.history.Get(key, v)
		return b, v, found
	}
	for _, v := range c.Versions {
		if b, ok := h.history.Get(key, v); ok {
			return b, v, true
		}
	}
	return nil, "", false
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
func (h *Handler) rebase(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string,
	repl *caddy.Replacer, s conflict.State, c conflict.Precondition) bool {
	if h.history == nil || h.report || !s.Known() {
		return false
	}
	base, claimed, haveBase := h.claimedRepresentation(key, c)
	if !haveBase && !h.IncludeCurrent {
		return false
	}
	theirs, ok := h.history.Get(key, s.Version)
	if !ok {
		if theirs, ok = h.fetchRepresentation(r, next, key, s.Version); !ok {
			return false
		}
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
	w.Header().Set("Conflict-Merged", merged)
	setPlaceholders(repl, "merged", quoteOrEmpty(s.Version))
	countDecision("merged")
	h.logger.Info("stale write merged", zap.String("key", key), zap.String("method", r.Method),
		zap.String("claimed", claimed), zap.String("current_version", s.Version))
	return true
}

// mergeHelp adds to a stale-version problem what changed since the
// client's version, when the history holds both representations:
// changed_paths and changes (an RFC 7396 merge patch from the client's
// version to the current one), with `merge auto` the conflicting_paths
// that kept the write from being rebased, and with include_current the
// current representation.
func (h *Handler) mergeHelp(p *conflict.Problem, r *http.Request, key string, s conflict.State, c conflict.Precondition) {
	if h.history == nil || !s.Known() {
		return
	}
	current, ok := h.history.Get(key, s.Version)
	if !ok {
		return
	}
	if claimed, _, ok := h.claimedRepresentation(key, c); ok {
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
