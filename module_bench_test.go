package caddyconflict

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// benchHandler is a provisioned handler with the default configuration
// and a silent logger.
func benchHandler(b *testing.B) *Handler {
	b.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	h := new(Handler)
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zap.NewNop()
	return h
}

// upstreamStub answers every request with a small body and a fixed ETag,
// as reverse_proxy would relay a backend's answer.
var upstreamStub = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("ETag", `"v1"`)
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write([]byte(`{"id":1,"title":"hello"}`))
	return err
})

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	header http.Header
	status int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) WriteHeader(status int)      { d.status = status }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// benchServe sends req through h once per iteration, with a fresh
// replacer in the context (as Caddy's server gives each request) when
// withReplacer is set.
func benchServe(b *testing.B, h *Handler, req *http.Request, withReplacer bool, want int) {
	b.Helper()
	w := &discardWriter{header: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.header)
		w.status = 0
		repl := caddy.NewReplacer()
		var ctxRepl *caddy.Replacer
		if withReplacer {
			ctxRepl = repl
		}
		r := req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, ctxRepl))
		if err := h.ServeHTTP(w, r, upstreamStub); err != nil {
			b.Fatal(err)
		}
		if w.status != want {
			b.Fatalf("status %d, want %d", w.status, want)
		}
	}
}

// BenchmarkServeGET is the read path: forward, learn the ETag, set the
// placeholders. "placeholders=off" runs without a replacer, so the
// difference is the cost of the placeholders.
func BenchmarkServeGET(b *testing.B) {
	for _, c := range []struct {
		name         string
		placeholders bool
		metrics      bool
	}{
		{"placeholders=on/metrics=on", true, true},
		{"placeholders=off/metrics=on", false, true},
		{"placeholders=on/metrics=off", true, false},
		{"placeholders=off/metrics=off", false, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			defer setMetricsEnabled(c.metrics)()
			h := benchHandler(b)
			req := httptest.NewRequest(http.MethodGet, "http://example.com/articles/1", nil)
			benchServe(b, h, req, c.placeholders, http.StatusOK)
		})
	}
}

// BenchmarkServePUT is a forwarded write: claim, decide, forward, commit;
// with metrics it also counts the decision and times the claim. Each write
// is based on the version the previous one returned, as a client's would.
func BenchmarkServePUT(b *testing.B) {
	for _, c := range []struct {
		name    string
		metrics bool
	}{
		{"metrics=on", true},
		{"metrics=off", false},
	} {
		b.Run(c.name, func(b *testing.B) {
			defer setMetricsEnabled(c.metrics)()
			h := benchHandler(b)
			n := 0
			upstream := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				n++ // every write makes a new version
				w.Header().Set("ETag", `"w`+strconv.Itoa(n)+`"`)
				w.WriteHeader(http.StatusNoContent)
				return nil
			})
			w := &discardWriter{header: make(http.Header)}
			put := httptest.NewRequest(http.MethodPut, "http://example.com/articles/2", nil)
			if err := h.ServeHTTP(w, put, upstream); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				put.Header.Set("If-Match", w.header.Get("ETag"))
				benchWrite(b, h, w, put, upstream)
			}
		})
	}
}

// BenchmarkServePUTKeys is the benchmark's put workload without the
// network: writes with a 600-byte body to 10,000 keys in turn, each
// written a few times, so that most writes find a state that a GET or an
// earlier write left and make it grow (a new superseded version).
func BenchmarkServePUTKeys(b *testing.B) {
	h := benchHandler(b)
	const keys = 10000
	versions := make([]int, keys)
	upstream := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		id, _ := strconv.Atoi(r.URL.Path[len("/docs/"):])
		if r.Method == http.MethodPut {
			versions[id]++
		}
		w.Header().Set("ETag", `"`+strconv.Itoa(id)+"-"+strconv.Itoa(versions[id])+`"`)
		if r.Method != http.MethodPut {
			w.WriteHeader(http.StatusOK)
			return nil
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	w := &discardWriter{header: make(http.Header)}
	reqs := make([]*http.Request, keys)
	for i := range reqs {
		get := httptest.NewRequest(http.MethodGet, "http://example.com/docs/"+strconv.Itoa(i), nil)
		get = get.WithContext(context.WithValue(get.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		if err := h.ServeHTTP(w, get, upstream); err != nil {
			b.Fatal(err)
		}
		reqs[i] = httptest.NewRequest(http.MethodPut, "http://example.com/docs/"+strconv.Itoa(i), nil)
	}
	body := []byte(strings.Repeat("x", 600))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := i % keys
		i++
		put := reqs[id]
		put.Header.Set("If-Match", `"`+strconv.Itoa(id)+"-"+strconv.Itoa(versions[id])+`"`)
		put.Body = io.NopCloser(bytes.NewReader(body))
		put.ContentLength = int64(len(body))
		benchWrite(b, h, w, put, upstream)
	}
}

// benchWrite sends put through h with a fresh replacer, as Caddy's server
// gives each request, and expects the upstream's 204.
func benchWrite(b *testing.B, h *Handler, w *discardWriter, put *http.Request, upstream caddyhttp.Handler) {
	clear(w.header)
	w.status = 0
	r := put.WithContext(context.WithValue(put.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	if err := h.ServeHTTP(w, r, upstream); err != nil {
		b.Fatal(err)
	}
	if w.status != http.StatusNoContent {
		b.Fatalf("status %d, want 204", w.status)
	}
}
