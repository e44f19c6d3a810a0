package caddyconflict

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

func TestUnmarshalCaddyfileGuards(t *testing.T) {
	var h Handler
	input := `conflict {
		methods PUT PATCH DELETE POST
		guard parent
		guard children
		guard reference /categoryId /categories/{value}
		guard reference /authorId /users/{value}
	}`
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := []Guard{{Kind: "parent"}, {Kind: "children"},
		{Kind: "reference", Pointer: "/categoryId", Template: "/categories/{value}"},
		{Kind: "reference", Pointer: "/authorId", Template: "/users/{value}"}}
	if !reflect.DeepEqual(h.Guards, want) {
		t.Errorf("Guards = %+v\nwant %+v", h.Guards, want)
	}
	for _, bad := range []string{
		"conflict {\n guard \n}",
		"conflict {\n guard sibling \n}",
		"conflict {\n guard parent extra \n}",
		"conflict {\n guard children /x \n}",
		"conflict {\n guard reference /categoryId \n}",
		"conflict {\n guard reference /a /b/{value} extra \n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil || !strings.Contains(err.Error(), "guard") {
			t.Errorf("%q: error %v should name guard", bad, err)
		}
	}
}

func TestValidateGuards(t *testing.T) {
	for _, g := range []Guard{
		{Kind: "sibling"},
		{Kind: "parent", Pointer: "/x"},
		{Kind: "reference", Pointer: "categoryId", Template: "/categories/{value}"},
		{Kind: "reference", Pointer: "", Template: "/categories/{value}"},
		{Kind: "reference", Pointer: "/a~2", Template: "/categories/{value}"},
		{Kind: "reference", Pointer: "/categoryId", Template: "/categories/"},
		{Kind: "reference", Pointer: "/categoryId", Template: "categories/{value}"},
		{Kind: "reference", Pointer: "/categoryId", Template: "/categories/{value}?embed=1"},
	} {
		h := Handler{Guards: []Guard{g}}
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "conflict: guard:") {
			t.Errorf("%+v: error %v should name the guard sub-directive", g, err)
		}
	}
	ok := Handler{Guards: []Guard{{Kind: "parent"}, {Kind: "children"},
		{Kind: "reference", Pointer: "/meta/category", Template: "/categories/{value}"}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid guards: %v", err)
	}
}

// TestAdaptGuards: guards adapt to JSON and decode back unchanged.
func TestAdaptGuards(t *testing.T) {
	input := `:8080 {
	conflict {
		guard parent
		guard reference /categoryId /categories/{value}
	}
	reverse_proxy 127.0.0.1:8081
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"guards":[{"kind":"parent"},{"kind":"reference","pointer":"/categoryId","template":"/categories/{value}"}]`) {
		t.Fatalf("adapted config lacks the guards: %s", out)
	}
	for _, hh := range collectHandlers(mustJSON(t, out)) {
		if hh["handler"] != "conflict" {
			continue
		}
		raw, _ := json.Marshal(hh)
		var h Handler
		if err := json.Unmarshal(raw, &h); err != nil {
			t.Fatal(err)
		}
		if len(h.Guards) != 2 || h.Guards[1].Template != "/categories/{value}" {
			t.Errorf("decoded guards %+v", h.Guards)
		}
		return
	}
	t.Fatal("no conflict handler")
}

func mustJSON(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// davStub is an upstream of documents and collections by path, like a
// WebDAV server without its checks: PUT into a missing collection is
// applied anyway, DELETE removes a collection with its members. It answers
// HEAD of a collection without a trailing slash with a redirect, as nginx
// does. Probes (HEAD) can be held to make them concurrent.
type davStub struct {
	mu     sync.Mutex
	docs   map[string]int  // path -> version
	cols   map[string]bool // collection paths, without trailing slash
	writes []string        // "METHOD path body" of each write that arrived
	heads  sync.Map        // path -> *atomic.Int64, HEAD requests
	hold   chan struct{}
}

// headsOf counts the HEAD requests for path (with or without a trailing slash).
func (d *davStub) headsOf(path string) int64 {
	n := int64(0)
	for _, p := range []string{path, path + "/"} {
		if c, ok := d.heads.Load(p); ok {
			n += c.(*atomic.Int64).Load()
		}
	}
	return n
}

func newDAVStub() *davStub { return &davStub{docs: map[string]int{}, cols: map[string]bool{}} }

func (d *davStub) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	p := strings.TrimSuffix(r.URL.Path, "/")
	if r.Method == http.MethodHead {
		c, _ := d.heads.LoadOrStore(r.URL.Path, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
		if d.hold != nil {
			<-d.hold
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if d.cols[p] {
			if !strings.HasSuffix(r.URL.Path, "/") {
				w.Header().Set("Location", p+"/")
				w.WriteHeader(http.StatusMovedPermanently)
				return nil
			}
			w.WriteHeader(http.StatusOK)
			return nil
		}
		v, ok := d.docs[p]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, v))
		w.WriteHeader(http.StatusOK)
	case "MKCOL":
		d.cols[p] = true
		w.WriteHeader(http.StatusCreated)
	case http.MethodDelete:
		d.writes = append(d.writes, "DELETE "+p)
		for k := range d.docs {
			if k == p || strings.HasPrefix(k, p+"/") {
				delete(d.docs, k)
			}
		}
		delete(d.cols, p)
		w.WriteHeader(http.StatusNoContent)
	default:
		body, _ := io.ReadAll(r.Body)
		d.writes = append(d.writes, r.Method+" "+p+" "+string(body))
		d.docs[p]++
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, d.docs[p]))
		w.WriteHeader(http.StatusCreated)
	}
	return nil
}

func (d *davStub) written() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.writes...)
}

// guardHandler is a provisioned handler with the given guards.
func guardHandler(t testing.TB, configure func(h *Handler)) *Handler {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	h := new(Handler)
	configure(h)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zap.NewNop()
	return h
}

type served struct {
	status int
	header http.Header
	body   []byte
}

func (s served) problem(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(s.body, &m); err != nil {
		t.Fatalf("not JSON: %s", s.body)
	}
	return m
}

// serve sends one request for http://host+path through h to up.
func serve(t testing.TB, h *Handler, up *davStub, method, host, path, body string, hdr ...string) served {
	t.Helper()
	return send(t, h, up, method, "http://"+host+path, body, hdr...)
}

// expectGuard checks a guard rejection and the resources it names.
func expectGuard(t *testing.T, s served, kind string, related ...string) {
	t.Helper()
	if s.status != http.StatusConflict {
		t.Fatalf("status %d, want 409 %s: %s", s.status, kind, s.body)
	}
	p := s.problem(t)
	if typ, _ := p["type"].(string); !strings.HasSuffix(typ, "#"+kind) {
		t.Fatalf("type %q, want %s: %s", typ, kind, s.body)
	}
	var got []string
	for _, v := range p["related"].([]any) {
		got = append(got, v.(string))
	}
	if !reflect.DeepEqual(got, related) {
		t.Errorf("related = %q, want %q", got, related)
	}
	if d, _ := p["detail"].(string); d == "" {
		t.Error("no detail")
	}
}

func TestGuardParent(t *testing.T) {
	up := newDAVStub()
	h := guardHandler(t, func(h *Handler) {
		h.Methods = []string{"PUT", "PATCH", "DELETE", "POST"}
		h.Guards = []Guard{{Kind: GuardParent}}
	})
	const host = "parent.test"
	// Unknown parent: forwarded (the proxy knows nothing, no preflight).
	if s := serve(t, h, up, "PUT", host, "/dir/a.txt", "x"); s.status != 201 {
		t.Fatalf("unknown parent: %d %s", s.status, s.body)
	}
	// The parent is seen missing (404), or deleted through the proxy.
	serve(t, h, up, "GET", host, "/dir", "")
	before := len(up.written())
	expectGuard(t, serve(t, h, up, "PUT", host, "/dir/b.txt", "x"), "parent-missing", host+"/dir")
	expectGuard(t, serve(t, h, up, "PATCH", host, "/Dir/../dir/b.txt", "x"), "parent-missing", host+"/dir")
	if len(up.written()) != before {
		t.Fatalf("a rejected write reached the upstream: %q", up.written()[before:])
	}
	// A DELETE below a missing parent is not guarded (nothing to create).
	if s := serve(t, h, up, "DELETE", host, "/dir/a.txt", ""); s.status != 204 {
		t.Errorf("DELETE below a missing parent: %d", s.status)
	}
	// MKCOL through the proxy: it may exist now.
	serve(t, h, up, "MKCOL", host, "/dir/", "")
	if s := serve(t, h, up, "PUT", host, "/dir/b.txt", "x"); s.status != 201 {
		t.Fatalf("after MKCOL: %d %s", s.status, s.body)
	}
	// A POST's parent is the collection it is sent to.
	serve(t, h, up, "GET", host, "/gone", "")
	expectGuard(t, serve(t, h, up, "POST", host, "/gone", `{"a":1}`), "parent-missing", host+"/gone")
	// The root always exists, whatever GET / said.
	serve(t, h, up, "GET", host, "/", "")
	if s := serve(t, h, up, "PUT", host, "/top.txt", "x"); s.status != 201 {
		t.Errorf("write into the root: %d %s", s.status, s.body)
	}
}

func TestGuardChildren(t *testing.T) {
	up := newDAVStub()
	h := guardHandler(t, func(h *Handler) { h.Guards = []Guard{{Kind: GuardChildren}} })
	const host = "children.test"
	serve(t, h, up, "MKCOL", host, "/bucket/", "")
	serve(t, h, up, "PUT", host, "/bucket/a.txt", "x")
	serve(t, h, up, "PUT", host, "/bucket/sub/b.txt", "x")
	serve(t, h, up, "PUT", host, "/bucketlist", "x") // shares the prefix, is no child
	expectGuard(t, serve(t, h, up, "DELETE", host, "/bucket/", ""), "not-empty",
		host+"/bucket/a.txt", host+"/bucket/sub/b.txt")
	serve(t, h, up, "DELETE", host, "/bucket/a.txt", "")
	expectGuard(t, serve(t, h, up, "DELETE", host, "/bucket", ""), "not-empty", host+"/bucket/sub/b.txt")
	serve(t, h, up, "DELETE", host, "/bucket/sub/b.txt", "")
	if s := serve(t, h, up, "DELETE", host, "/bucket/", ""); s.status != 204 {
		t.Fatalf("empty bucket: %d %s", s.status, s.body)
	}

	// At most MaxRelated are named.
	for i := range 12 {
		serve(t, h, up, "PUT", host, fmt.Sprintf("/many/f%02d", i), "x")
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("%s/many/f%02d", host, i))
	}
	expectGuard(t, serve(t, h, up, "DELETE", host, "/many", ""), "not-empty", want...)
}

// TestGuardChildrenAfterDelete: once a collection was deleted through the
// proxy, what it held no longer counts, though the proxy never saw those
// members deleted one by one.
func TestGuardChildrenAfterDelete(t *testing.T) {
	up := newDAVStub()
	h := guardHandler(t, func(h *Handler) { h.Guards = []Guard{{Kind: GuardChildren}} })
	const host = "recreate.test"
	serve(t, h, up, "PUT", host, "/c/x.txt", "x")
	// Deleted behind the proxy's back with its collection; a GET tells the proxy.
	up.mu.Lock()
	delete(up.docs, "/c/x.txt")
	up.mu.Unlock()
	serve(t, h, up, "GET", host, "/c/x.txt", "")
	serve(t, h, up, "PUT", host, "/c/y.txt", "y")
	expectGuard(t, serve(t, h, up, "DELETE", host, "/c/", ""), "not-empty", host+"/c/y.txt")

	// The same through the proxy's own DELETE of the collection: with the
	// guard off for one request (mode report) it goes through.
	hr := guardHandler(t, func(h *Handler) { h.Guards = []Guard{{Kind: GuardChildren}}; h.Mode = "report" })
	s := serve(t, hr, up, "DELETE", host, "/c/", "")
	if s.status != 204 || s.header.Get("Conflict-Report") != "not-empty" {
		t.Fatalf("report mode: %d, Conflict-Report %q", s.status, s.header.Get("Conflict-Report"))
	}
	serve(t, h, up, "MKCOL", host, "/c/", "")
	if s := serve(t, h, up, "DELETE", host, "/c/", ""); s.status != 204 {
		t.Fatalf("re-created empty collection: %d %s", s.status, s.body)
	}
	// Versions are kept: a stale write to a former member is still judged.
	st, _, _ := h.store.Get(context.Background(), host+"/c/y.txt")
	if st.Live || st.Version != `"v1"` {
		t.Errorf("former member's state %+v: want not live, version kept", st)
	}
}

func TestGuardReference(t *testing.T) {
	up := newDAVStub()
	up.docs["/categories/1"] = 1
	h := guardHandler(t, func(h *Handler) {
		h.Methods = []string{"PUT", "PATCH", "DELETE", "POST"}
		h.Guards = []Guard{{Kind: GuardReference, Pointer: "/categoryId", Template: "/categories/{value}"},
			{Kind: GuardReference, Pointer: "/tagIds", Template: "/tags/{value}"}}
	})
	const host = "reference.test"
	serve(t, h, up, "GET", host, "/categories/1", "")
	serve(t, h, up, "GET", host, "/categories/2", "") // 404: a tombstone
	serve(t, h, up, "GET", host, "/tags/7", "")
	body := `{"title":"t","categoryId":1}`
	if s := serve(t, h, up, "POST", host, "/articles", body); s.status != 201 {
		t.Fatalf("existing category: %d %s", s.status, s.body)
	}
	if w := up.written(); w[len(w)-1] != "POST /articles "+body {
		t.Fatalf("the upstream got %q", w[len(w)-1])
	}
	expectGuard(t, serve(t, h, up, "POST", host, "/articles", `{"title":"t","categoryId":2}`),
		"reference-missing", host+"/categories/2")
	expectGuard(t, serve(t, h, up, "PUT", host, "/articles/1", `{"categoryId":"2","tagIds":[5,7]}`),
		"reference-missing", host+"/categories/2", host+"/tags/7")
	for _, ok := range []string{
		`{"categoryId":3}`,                // unknown: forwarded
		`{"categoryId":null}`,             // names nothing
		`{"categoryId":".."}`,             // names no single resource
		`{"title":"no reference"}`,        // no field
		`{"categoryId":2`,                 // not JSON: the upstream says so
		`{"categoryId":1,"tagIds":[1,2]}`, // unknown tags
	} {
		if s := serve(t, h, up, "PATCH", host, "/articles/1", ok); s.status != 201 {
			t.Errorf("%s: %d %s", ok, s.status, s.body)
		}
	}
	// Not JSON by content type: not looked into.
	req := httptest.NewRequest("PUT", "http://"+host+"/articles/1", strings.NewReader(`{"categoryId":2}`))
	req.Header.Set("Content-Type", "text/plain")
	rec := httptest.NewRecorder()
	_ = h.ServeHTTP(rec, req, up)
	if rec.Code != 201 {
		t.Errorf("text/plain body: %d", rec.Code)
	}
	// A DELETE carries no reference.
	if s := serve(t, h, up, "DELETE", host, "/articles/1", `{"categoryId":2}`); s.status != 204 {
		t.Errorf("DELETE: %d", s.status)
	}
}

func TestGuardReferenceBodyLimit(t *testing.T) {
	up := newDAVStub()
	h := guardHandler(t, func(h *Handler) {
		h.MaxBody = 64
		h.Guards = []Guard{{Kind: GuardReference, Pointer: "/categoryId", Template: "/categories/{value}"}}
	})
	const host = "bodylimit.test"
	serve(t, h, up, "GET", host, "/categories/2", "")
	big := `{"categoryId":2,"pad":"` + strings.Repeat("x", 200) + `"}`
	if s := serve(t, h, up, "PUT", host, "/articles/1", big); s.status != 201 {
		t.Fatalf("body over max_body: %d %s", s.status, s.body)
	}
	if w := up.written(); w[len(w)-1] != "PUT /articles/1 "+big {
		t.Fatalf("the large body reached the upstream changed: %d bytes", len(w[len(w)-1]))
	}
}

// TestGuardPreflight: unknown parents and references are asked about, once
// for concurrent writes, and what the answer said is learned.
func TestGuardPreflight(t *testing.T) {
	up := newDAVStub()
	up.cols["/dir"] = true
	up.docs["/categories/1"] = 1
	h := guardHandler(t, func(h *Handler) {
		h.Preflight = true
		h.Guards = []Guard{{Kind: GuardParent},
			{Kind: GuardReference, Pointer: "/categoryId", Template: "/categories/{value}"}}
	})
	const host = "preflight.test"
	// The collection answers HEAD /dir with a redirect to /dir/: followed.
	if s := serve(t, h, up, "PUT", host, "/dir/a.txt", "x"); s.status != 201 {
		t.Fatalf("existing collection: %d %s", s.status, s.body)
	}
	st, _, _ := h.store.Get(context.Background(), host+"/dir")
	if !st.IsLive() {
		t.Errorf("the collection's existence was not learned: %+v", st)
	}
	heads := up.headsOf("/dir")
	serve(t, h, up, "PUT", host, "/dir/b.txt", "x")
	if up.headsOf("/dir") != heads {
		t.Error("a known parent was asked about again")
	}
	expectGuard(t, serve(t, h, up, "PUT", host, "/nodir/a.txt", "x"), "parent-missing", host+"/nodir")
	expectGuard(t, serve(t, h, up, "PUT", host, "/dir/c.txt", `{"categoryId":9}`), "reference-missing", host+"/categories/9")

	// Concurrent writes wanting to know about the same category: one probe.
	up.hold = make(chan struct{})
	heads = up.headsOf("/categories/1")
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Go(func() {
			statuses[i] = serve(t, h, up, "PUT", host, fmt.Sprintf("/dir/n%d", i), `{"categoryId":1}`).status
		})
	}
	time.Sleep(300 * time.Millisecond)
	close(up.hold)
	wg.Wait()
	up.hold = nil
	if n := up.headsOf("/categories/1") - heads; n != 1 {
		t.Errorf("%d probes for 8 concurrent writes, want 1", n)
	}
	for i, s := range statuses {
		if s != 201 {
			t.Errorf("write %d: %d", i, s)
		}
	}
}

// TestGuardVerify: with verify, a tombstone is confirmed before a
// rejection; something created behind the proxy's back is let through.
func TestGuardVerify(t *testing.T) {
	up := newDAVStub()
	h := guardHandler(t, func(h *Handler) {
		h.Verify = true
		h.Guards = []Guard{{Kind: GuardParent}, {Kind: GuardChildren}}
	})
	const host = "verify.test"
	serve(t, h, up, "GET", host, "/dir", "") // 404
	expectGuard(t, serve(t, h, up, "PUT", host, "/dir/a.txt", "x"), "parent-missing", host+"/dir")
	up.mu.Lock()
	up.cols["/dir"] = true // created directly on the upstream
	up.mu.Unlock()
	if s := serve(t, h, up, "PUT", host, "/dir/a.txt", "x"); s.status != 201 {
		t.Fatalf("parent created behind the proxy: %d %s", s.status, s.body)
	}
	serve(t, h, up, "PUT", host, "/dir/b.txt", "x")
	up.mu.Lock()
	delete(up.docs, "/dir/a.txt") // deleted directly on the upstream
	up.mu.Unlock()
	expectGuard(t, serve(t, h, up, "DELETE", host, "/dir/", ""), "not-empty", host+"/dir/b.txt")
}

// TestGuardsOff: without guards, the same writes are decided as before.
func TestGuardsOff(t *testing.T) {
	up := newDAVStub()
	h := guardHandler(t, func(*Handler) {})
	const host = "off.test"
	serve(t, h, up, "GET", host, "/dir", "")
	serve(t, h, up, "PUT", host, "/dir/a.txt", "x")
	if s := serve(t, h, up, "PUT", host, "/dir/b.txt", "x"); s.status != 201 {
		t.Errorf("PUT: %d", s.status)
	}
	if s := serve(t, h, up, "DELETE", host, "/dir/", ""); s.status != 204 {
		t.Errorf("DELETE: %d", s.status)
	}
}

// BenchmarkGuardsGET: the read path with guards on does the same work as
// without (the guards read the version table only on writes).
func BenchmarkGuardsGET(b *testing.B) {
	for _, c := range []struct {
		name   string
		guards []Guard
	}{
		{"guards=off", nil},
		{"guards=children", []Guard{{Kind: GuardChildren}}},
		{"guards=all", []Guard{{Kind: GuardParent}, {Kind: GuardChildren},
			{Kind: GuardReference, Pointer: "/categoryId", Template: "/categories/{value}"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := guardHandler(b, func(h *Handler) { h.Guards = c.guards })
			req := httptest.NewRequest(http.MethodGet, "http://example.com/articles/1", nil)
			benchServe(b, h, req, true, http.StatusOK)
		})
	}
}

// BenchmarkGuardsPUT: a forwarded write with and without `guard parent`
// and a reference (the parent and the category known to exist).
func BenchmarkGuardsPUT(b *testing.B) {
	for _, c := range []struct {
		name   string
		guards []Guard
	}{
		{"guards=off", nil},
		{"guards=parent+reference", []Guard{{Kind: GuardParent},
			{Kind: GuardReference, Pointer: "/categoryId", Template: "/categories/{value}"}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := guardHandler(b, func(h *Handler) { h.Guards = c.guards })
			ctx := context.Background()
			for _, k := range []string{"example.com/articles", "example.com/categories/1"} {
				_, _ = h.store.Observe(ctx, k, h.store.ReadStart(k), `"c"`, false)
			}
			w := &discardWriter{header: make(http.Header)}
			body := []byte(`{"id":2,"title":"hello","categoryId":1}`)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.header)
				req := httptest.NewRequest(http.MethodPut, "http://example.com/articles/2", strings.NewReader(string(body)))
				req.Header.Set("Content-Type", "application/json")
				if err := h.ServeHTTP(w, req, upstreamStub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGuardChildrenDelete: the cost of `guard children` on a DELETE,
// by the keys the version table holds: the memory store's prefix index
// walks only the keys below the deleted one.
func BenchmarkGuardChildrenDelete(b *testing.B) {
	for _, keys := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("table=%d", keys), func(b *testing.B) {
			h := guardHandler(b, func(h *Handler) {
				h.Guards = []Guard{{Kind: GuardChildren}}
				h.CacheSize = 256 << 20 // room for all keys
				h.TTL = caddy.Duration(time.Hour)
			})
			ctx := context.Background()
			for i := range keys {
				k := fmt.Sprintf("bench.test/other/%d", i)
				_, _ = h.store.Observe(ctx, k, h.store.ReadStart(k), `"x"`, false)
			}
			k := "bench.test/bucket/live.txt"
			_, _ = h.store.Observe(ctx, k, h.store.ReadStart(k), `"x"`, false)
			req := httptest.NewRequest(http.MethodDelete, "http://bench.test/bucket/", nil)
			b.ReportAllocs()
			for b.Loop() {
				if rej := h.checkGuards(req, upstreamStub, "bench.test/bucket", h.stateOf(ctx, "bench.test/bucket")); rej == nil {
					b.Fatal("the live child was not found")
				}
			}
		})
	}
}

func (h *Handler) stateOf(ctx context.Context, key string) (s conflict.State) {
	s, _, _ = h.store.Get(ctx, key)
	return s
}
