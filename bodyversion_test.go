package caddyconflict

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

func bodyVersionHandler(tb testing.TB, source, pointer string) *Handler {
	tb.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	h := &Handler{Version: &VersionSource{Source: source, Pointer: pointer}}
	if err := h.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zap.NewNop()
	return h
}

// jsonDoc is a JSON document of about size bytes with "version" last.
func jsonDoc(size int, version string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":"item","n":12345}`)
	}
	fmt.Fprintf(&b, `],"version":%q}`, version)
	return b.Bytes()
}

// heldUpstream answers body in pieces of chunk bytes, announcing its length
// or not (chunked).
func heldUpstream(body []byte, chunk int, announce bool) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Etag", `"upstream"`)
		if announce {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(http.StatusOK)
		for p := body; len(p) > 0; {
			n := min(chunk, len(p))
			if _, err := w.Write(p[:n]); err != nil {
				return err
			}
			p = p[n:]
		}
		return nil
	})
}

// TestBodyVersionerPooled: the held body reaches the client whole, with
// the version of the whole body (hash: hashed piece by piece while held,
// equal to HashTag of the body; json: the field), whatever the pieces,
// with or without the upstream's Content-Length, and buffers from the pool
// never leak a previous body; a client that has the version gets 304; a
// body over max_body streams through without a version.
func TestBodyVersionerPooled(t *testing.T) {
	for _, source := range []string{"hash", "json"} {
		h := bodyVersionHandler(t, source, "/version")
		for i, size := range []int{10, 1 << 10, 64 << 10, 300 << 10, 64 << 10, 1 << 10} {
			body := jsonDoc(size, fmt.Sprint("v", i))
			want := conflict.HashTag(body)
			if source == "json" {
				want = fmt.Sprintf(`"v%d"`, i)
			}
			for _, chunk := range []int{1 << 20, 4096, 333} {
				for _, announce := range []bool{true, false} {
					name := fmt.Sprintf("%s/%d/%d/%v", source, size, chunk, announce)
					req := httptest.NewRequest(http.MethodGet, "http://example.com/doc", nil)
					w := &sink{header: make(http.Header), body: new(bytes.Buffer)}
					if _, err := h.forward(w, req, heldUpstream(body, chunk, announce)); err != nil {
						t.Fatal(name, err)
					}
					if w.status != 200 || !bytes.Equal(w.body.Bytes(), body) || w.header.Get("Etag") != want ||
						w.header.Get("Content-Length") != strconv.Itoa(len(body)) {
						t.Fatalf("%s: status %d, %d bytes (want %d), ETag %q (want %q), Content-Length %q", name, w.status,
							w.body.Len(), len(body), w.header.Get("Etag"), want, w.header.Get("Content-Length"))
					}
					req = httptest.NewRequest(http.MethodGet, "http://example.com/doc", nil)
					req.Header.Set("If-None-Match", want)
					w = &sink{header: make(http.Header), body: new(bytes.Buffer)}
					if _, err := h.forward(w, req, heldUpstream(body, chunk, announce)); err != nil {
						t.Fatal(name, err)
					}
					if w.status != http.StatusNotModified || w.body.Len() != 0 {
						t.Fatalf("%s with If-None-Match: status %d, %d bytes", name, w.status, w.body.Len())
					}
				}
			}
		}
		// Over max_body: streamed, the upstream's headers kept but its ETag, no version.
		h.MaxBody = 8 << 10
		body := jsonDoc(64<<10, "big")
		req := httptest.NewRequest(http.MethodGet, "http://example.com/doc", nil)
		w := &sink{header: make(http.Header), body: new(bytes.Buffer)}
		if _, err := h.forward(w, req, heldUpstream(body, 3000, true)); err != nil {
			t.Fatal(err)
		}
		if w.status != 200 || !bytes.Equal(w.body.Bytes(), body) || w.header.Get("Etag") != "" {
			t.Fatalf("%s over max_body: status %d, %d bytes, ETag %q", source, w.status, w.body.Len(), w.header.Get("Etag"))
		}
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "Application/JSON": true,
		"application/problem+json": true, "application/vnd.api+json": true, "application/merge-patch+json": true,
		"": false, "text/html": false, "text/plain": false, "application/octet-stream": false,
		"application/jsonx": false, "text/json": false, "application/json; =x": false,
	} {
		if got := isJSON(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

// BenchmarkBodyVersion: a GET answered through the body versioner, the
// upstream writing 32 KiB pieces with its Content-Length.
func BenchmarkBodyVersion(b *testing.B) {
	for _, source := range []string{"hash", "json"} {
		for _, size := range []int{1 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", source, size>>10), func(b *testing.B) {
				h := bodyVersionHandler(b, source, "/version")
				body := jsonDoc(size, "7")
				next := heldUpstream(body, 32<<10, true)
				req := httptest.NewRequest(http.MethodGet, "http://example.com/doc", nil)
				w := &sink{header: make(http.Header)}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					w.reset()
					req.Header.Del("Accept-Encoding")
					if _, err := h.forward(w, req, next); err != nil || w.n != len(body) || !strings.HasPrefix(w.header.Get("Etag"), `"`) {
						b.Fatal(err, w.n, w.header)
					}
				}
			})
		}
	}
}
