package caddyconflict

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// observerHandler is a provisioned handler with the default configuration
// (normalize 409) and a silent logger.
func observerHandler(tb testing.TB) *Handler {
	tb.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	h := new(Handler)
	if err := h.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zap.NewNop()
	return h
}

// sink is a ResponseWriter that keeps the status and counts the body.
type sink struct {
	header http.Header
	status int
	n      int
	body   *bytes.Buffer // nil: discard
}

func (s *sink) Header() http.Header    { return s.header }
func (s *sink) WriteHeader(status int) { s.status = status }
func (s *sink) Write(p []byte) (int, error) {
	s.n += len(p)
	if s.body != nil {
		s.body.Write(p)
	}
	return len(p), nil
}

func (s *sink) reset() {
	clear(s.header)
	s.status, s.n = 0, 0
	if s.body != nil {
		s.body.Reset()
	}
}

// fixedResponse is a trivial next handler: one status, headers set from
// preallocated values (as cheap as a handler can be), one body write.
func fixedResponse(status int, contentType string, body []byte) caddyhttp.Handler {
	ct, etag := []string{contentType}, []string{`"v1"`}
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		hdr := w.Header()
		hdr["Content-Type"] = ct
		hdr["Etag"] = etag
		w.WriteHeader(status)
		_, err := w.Write(body)
		return err
	})
}

// conflictBody1KiB is a CouchDB-style 409 body padded to 1 KiB.
func conflictBody1KiB() []byte {
	prefix := `{"error":"conflict","reason":"Document update conflict.","id":"article-42","rev":"7-`
	suffix := `"}`
	return []byte(prefix + strings.Repeat("a", 1024-len(prefix)-len(suffix)) + suffix)
}

// BenchmarkObserverPassThrough is a 200 with a 1 KiB body. "direct" is
// the baseline without the handler; "observer" sends the same response
// through the observer, which must add no buffering and no allocation but
// itself (1 alloc/op).
func BenchmarkObserverPassThrough(b *testing.B) {
	h := observerHandler(b)
	next := fixedResponse(http.StatusOK, "application/json", bytes.Repeat([]byte("x"), 1024))
	req := httptest.NewRequest(http.MethodGet, "http://example.com/articles/1", nil)
	w := &sink{header: make(http.Header)}
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(1024)
		for b.Loop() {
			w.reset()
			if err := next.ServeHTTP(w, req); err != nil || w.n != 1024 {
				b.Fatalf("err %v, %d bytes", err, w.n)
			}
		}
	})
	b.Run("observer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(1024)
		for b.Loop() {
			w.reset()
			if _, err := h.forward(w, req, next); err != nil || w.n != 1024 {
				b.Fatalf("err %v, %d bytes", err, w.n)
			}
		}
	})
}

// BenchmarkObserverNormalize1KiB rewrites a 1 KiB CouchDB-style 409 into
// a problem document: buffering, parsing, rendering, headers.
func BenchmarkObserverNormalize1KiB(b *testing.B) {
	h := observerHandler(b)
	body := conflictBody1KiB()
	next := fixedResponse(http.StatusConflict, "application/json", body)
	req := httptest.NewRequest(http.MethodPut, "http://example.com/articles/42", nil)
	w := &sink{header: make(http.Header)}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		w.reset()
		if _, err := h.forward(w, req, next); err != nil || w.status != http.StatusConflict {
			b.Fatalf("err %v, status %d", err, w.status)
		}
	}
}

// TestObserverPassThroughAllocs keeps the streamed path at one allocation
// (the observer) and checks that it really is unbuffered and untouched.
func TestObserverPassThroughAllocs(t *testing.T) {
	h := observerHandler(t)
	payload := bytes.Repeat([]byte("x"), 1024)
	next := fixedResponse(http.StatusOK, "application/json", payload)
	req := httptest.NewRequest(http.MethodGet, "http://example.com/articles/1", nil)
	w := &sink{header: make(http.Header), body: new(bytes.Buffer)}
	w.body.Grow(2048)
	allocs := testing.AllocsPerRun(200, func() {
		w.reset()
		if _, err := h.forward(w, req, next); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("a streamed 200 costs %v allocations through the observer, want at most 1", allocs)
	}
	if w.status != http.StatusOK || !bytes.Equal(w.body.Bytes(), payload) || w.header.Get("Etag") != `"v1"` {
		t.Errorf("streamed response changed: status %d, %d bytes, ETag %q", w.status, w.body.Len(), w.header.Get("Etag"))
	}
}

// TestObserverNormalize checks the rewrite as the client sees it:
// problem+json, Content-Length equal to the body, the upstream's JSON
// embedded, resource headers kept and body headers gone.
func TestObserverNormalize(t *testing.T) {
	h := observerHandler(t)
	body := conflictBody1KiB()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		hdr := w.Header()
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Content-Length", "1024")
		hdr.Set("Content-MD5", "bogus")
		hdr.Set("ETag", `"v7"`)
		hdr.Set("Retry-After", "3")
		hdr.Set("Link", `</articles/42>; rel="latest-version"`)
		hdr.Set("Trailer", "X-Checksum")
		w.WriteHeader(http.StatusConflict)
		_, err := w.Write(body)
		hdr.Set("X-Checksum", "abc")
		return err
	})
	for _, method := range []string{http.MethodPut, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			req := httptest.NewRequest(method, "http://example.com/articles/42", nil)
			w := &sink{header: make(http.Header), body: new(bytes.Buffer)}
			ow, err := h.forward(w, req, next)
			if err != nil {
				t.Fatal(err)
			}
			if w.status != http.StatusConflict || ow.version != `"v7"` {
				t.Fatalf("status %d, version %q", w.status, ow.version)
			}
			for name, want := range map[string]string{
				"Content-Type": "application/problem+json", "Etag": `"v7"`, "Retry-After": "3",
				"Link": `</articles/42>; rel="latest-version"`, "Content-Md5": "", "Trailer": "", "X-Checksum": "",
			} {
				if got := w.header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if method == http.MethodHead {
				if w.body.Len() != 0 || w.header.Get("Content-Length") != "" {
					t.Errorf("HEAD: %d body bytes, Content-Length %q; want none", w.body.Len(), w.header.Get("Content-Length"))
				}
				return
			}
			if cl := w.header.Get("Content-Length"); cl != strconv.Itoa(w.body.Len()) {
				t.Errorf("Content-Length %s, body %d bytes", cl, w.body.Len())
			}
			var p map[string]json.RawMessage
			if err := json.Unmarshal(w.body.Bytes(), &p); err != nil {
				t.Fatalf("not JSON: %v: %s", err, w.body)
			}
			if string(p["detail"]) != `"Document update conflict."` || !bytes.Equal(p["upstream"], body) {
				t.Errorf("detail %s, upstream %.60s", p["detail"], p["upstream"])
			}
		})
	}
}

// TestNarrowAcceptEncoding: writes ask the upstream only for codings the
// rewrite can read; reads, and handlers with normalize off, are untouched.
func TestNarrowAcceptEncoding(t *testing.T) {
	h := observerHandler(t)
	off := observerHandler(t)
	off.Normalize = []int{0}
	for _, tc := range []struct {
		h      *Handler
		method string
		in     []string
		want   []string
	}{
		{h, http.MethodPut, []string{"gzip, deflate, br, zstd"}, []string{"gzip, deflate, zstd"}},
		{h, http.MethodPost, []string{"br"}, nil},
		{h, "MKCOL", []string{"gzip", "br;q=0.9"}, []string{"gzip"}},
		{h, http.MethodPatch, []string{"gzip"}, []string{"gzip"}},
		{h, http.MethodGet, []string{"gzip, br"}, []string{"gzip, br"}},
		{off, http.MethodPut, []string{"gzip, br"}, []string{"gzip, br"}},
	} {
		req := httptest.NewRequest(tc.method, "http://example.com/a", nil)
		req.Header["Accept-Encoding"] = tc.in
		tc.h.narrowAcceptEncoding(req)
		if got := req.Header["Accept-Encoding"]; strings.Join(got, "|") != strings.Join(tc.want, "|") || (got == nil) != (tc.want == nil) {
			t.Errorf("%s %q: Accept-Encoding %q, want %q", tc.method, tc.in, got, tc.want)
		}
	}
}

// TestObserverBoundedBody: a 16 MiB conflict body with max_body 1 KiB is
// not held: the rewrite allocates far less than the body, and the client
// still gets a valid problem document with the message found before the cut.
func TestObserverBoundedBody(t *testing.T) {
	h := observerHandler(t)
	h.MaxBody = 1 << 10
	chunk := bytes.Repeat([]byte("x"), 32<<10)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(16<<20))
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"reason":"Document update conflict.","log":"`))
		for range (16 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	})
	req := httptest.NewRequest(http.MethodPut, "http://example.com/articles/42", nil)
	w := &sink{header: make(http.Header), body: new(bytes.Buffer)}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := h.forward(w, req, next); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("rewriting a 16 MiB body allocated %d bytes", n)
	}
	var p map[string]any
	if err := json.Unmarshal(w.body.Bytes(), &p); err != nil {
		t.Fatalf("not a JSON object: %v: %.200s", err, w.body)
	}
	if p["status"] != 409.0 || p["detail"] != "Document update conflict." ||
		w.header.Get("Content-Length") != strconv.Itoa(w.body.Len()) {
		t.Errorf("problem %v, Content-Length %s for %d bytes", p, w.header.Get("Content-Length"), w.body.Len())
	}
}
