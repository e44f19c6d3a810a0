package caddyconflict

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

func TestMergeCaddyfile(t *testing.T) {
	var h Handler
	d := caddyfile.NewTestDispenser("conflict {\n history 8 16MiB\n include_current\n merge auto\n}")
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Handler{History: &HistoryConfig{Count: 8, Size: 16 << 20}, IncludeCurrent: true, Merge: "auto"}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %+v", h)
	}
	h = Handler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("conflict {\n history 4\n}")); err != nil ||
		h.History == nil || h.History.Count != 4 || h.History.Size != 0 {
		t.Errorf("history without size: %v %+v", err, h.History)
	}

	for _, c := range []struct{ input, want string }{
		{"history", "history:"},
		{"history x 1MiB", "history:"},
		{"history 0", "history:"},
		{"history 8 lots", "history: invalid size"},
		{"history 8 1MiB 3", "history:"},
		{"include_current yes", "include_current:"},
		{"merge", "merge:"},
		{"merge manual", "merge: must be auto"},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("conflict {\n " + c.input + "\n}"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.input, err, c.want)
		}
	}

	for _, c := range []struct {
		h    Handler
		want string
	}{
		{Handler{IncludeCurrent: true}, "include_current: needs history"},
		{Handler{Merge: "auto"}, "merge: auto needs history"},
		{Handler{Merge: "yes", History: &HistoryConfig{Count: 1}}, "merge: must be auto"},
		{Handler{History: &HistoryConfig{Count: 0}}, "history:"},
		{Handler{History: &HistoryConfig{Count: 8, Size: 1000}}, "history: size must be at least 64KiB"},
	} {
		if err := c.h.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.h, err, c.want)
		}
	}

	// Caddy JSON: the Caddyfile adapts to members that decode again.
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(`:8080 {
	conflict {
		history 8 16MiB
		include_current
		merge auto
	}
	reverse_proxy 127.0.0.1:8081
}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, member := range []string{`"history":{"count":8,"size":16777216}`, `"include_current":true`, `"merge":"auto"`} {
		if !bytes.Contains(out, []byte(member)) {
			t.Errorf("adapted config lacks %s: %s", member, out)
		}
	}
}

// upstreamOf serves the legacy API as the next handler and records the
// requests it received.
type upstreamOf struct {
	api *legacyapi.API
	mu  sync.Mutex
	got []recorded
}

type recorded struct {
	method string
	header http.Header
	body   string
}

func (u *upstreamOf) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	body, _ := io.ReadAll(r.Body)
	if r.ContentLength >= 0 && int(r.ContentLength) != len(body) {
		http.Error(w, "Content-Length does not match the body", http.StatusBadRequest)
		return nil
	}
	u.mu.Lock()
	u.got = append(u.got, recorded{r.Method, r.Header.Clone(), string(body)})
	u.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	u.api.ServeHTTP(w, r)
	return nil
}

func (u *upstreamOf) last() recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.got[len(u.got)-1]
}

func (u *upstreamOf) count(method string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.got {
		if r.method == method {
			n++
		}
	}
	return n
}

func articleSeed() map[string][]map[string]any {
	return map[string][]map[string]any{"articles": {{"id": 1, "title": "Hello", "body": "First draft", "tags": []any{"a"}}}}
}

// mergeHandler is a provisioned handler configured from a Caddyfile block.
func mergeHandler(t testing.TB, block string) *Handler {
	t.Helper()
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("conflict {\n" + block + "\n}")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	h.logger = zap.NewNop()
	return h
}

// send sends one request through h to next; headers are name, value pairs.
func send(t testing.TB, h *Handler, next caddyhttp.Handler, method, url, body string, hdr ...string) served {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, url, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, req, next); err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return served{rec.Code, rec.Header(), rec.Body.Bytes()}
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %s", b)
	}
	return m
}

// TestMergeTwoEditors: two editors change different fields from the same
// version, both succeed; a third changes a field the first changed and
// gets a 409 saying what changed and where they collide.
func TestMergeTwoEditors(t *testing.T) {
	h := mergeHandler(t, "history 8 1MiB\ninclude_current\nmerge auto")
	up := &upstreamOf{api: legacyapi.New(articleSeed())}
	const url = "http://editors.test/articles/1"

	g := send(t, h, up, "GET", url, "")
	v1 := g.header.Get("ETag")
	doc := decode(t, g.body)

	doc["title"] = "Hello, world"
	a, _ := json.Marshal(doc)
	ra := send(t, h, up, "PUT", url, string(a), "If-Match", v1)
	if ra.status != 200 || ra.header.Get("Conflict-Merged") != "" {
		t.Fatalf("first editor: %d %v %s", ra.status, ra.header, ra.body)
	}
	v2 := ra.header.Get("ETag")

	doc["title"] = "Hello"
	doc["body"] = "Second draft"
	b, _ := json.Marshal(doc)
	rb := send(t, h, up, "PUT", url, string(b), "If-Match", v1)
	if rb.status != 200 {
		t.Fatalf("second editor: %d %s", rb.status, rb.body)
	}
	if got, want := rb.header.Get("Conflict-Merged"), v1+" -> "+v2; got != want {
		t.Errorf("Conflict-Merged = %q, want %q", got, want)
	}
	sent := up.last()
	if sent.header.Get("If-Match") != v2 {
		t.Errorf("upstream saw If-Match %q, want the current %q", sent.header.Get("If-Match"), v2)
	}
	final, _ := up.api.Record("articles", "1")
	if final["title"] != "Hello, world" || final["body"] != "Second draft" {
		t.Fatalf("upstream holds %v: an edit was lost", final)
	}
	v3 := rb.header.Get("ETag")

	doc["title"] = "Goodbye"
	doc["body"] = "First draft"
	c, _ := json.Marshal(doc)
	rc := send(t, h, up, "PUT", url, string(c), "If-Match", v1)
	if rc.status != 409 {
		t.Fatalf("third editor: %d %s", rc.status, rc.body)
	}
	p := decode(t, rc.body)
	if !reflect.DeepEqual(p["conflicting_paths"], []any{"/title"}) {
		t.Errorf("conflicting_paths = %v; %s", p["conflicting_paths"], rc.body)
	}
	if !reflect.DeepEqual(p["changes"], map[string]any{"title": "Hello, world", "body": "Second draft"}) {
		t.Errorf("changes = %v", p["changes"])
	}
	if !reflect.DeepEqual(p["changed_paths"], []any{"/body", "/title"}) {
		t.Errorf("changed_paths = %v", p["changed_paths"])
	}
	if cur, _ := p["current"].(map[string]any); cur["title"] != "Hello, world" || cur["body"] != "Second draft" {
		t.Errorf("current = %v", p["current"])
	}
	if p["current_version"] != v3 {
		t.Errorf("current_version = %v, want %s", p["current_version"], v3)
	}
	if n := up.count("PUT"); n != 2 {
		t.Errorf("upstream got %d PUTs, want 2", n)
	}
}

// TestMergePatch: a stale merge patch that touches other fields is
// forwarded unchanged with If-Match moved to the current version.
func TestMergePatch(t *testing.T) {
	h := mergeHandler(t, "history 8 1MiB\nmerge auto")
	up := &upstreamOf{api: legacyapi.New(articleSeed())}
	const url = "http://patch.test/articles/1"
	v1 := send(t, h, up, "GET", url, "").header.Get("ETag")
	r := send(t, h, up, "PATCH", url, `{"title":"New title"}`, "If-Match", v1, "Content-Type", "application/merge-patch+json")
	v2 := r.header.Get("ETag")

	r = send(t, h, up, "PATCH", url, `{"body":"New body","tags":null}`, "If-Match", v1, "Content-Type", "application/merge-patch+json")
	if r.status != 200 || r.header.Get("Conflict-Merged") != v1+" -> "+v2 {
		t.Fatalf("disjoint patch: %d %v %s", r.status, r.header, r.body)
	}
	sent := up.last()
	if sent.body != `{"body":"New body","tags":null}` || sent.header.Get("If-Match") != v2 {
		t.Errorf("upstream got %s with If-Match %s", sent.body, sent.header.Get("If-Match"))
	}
	final, _ := up.api.Record("articles", "1")
	if final["title"] != "New title" || final["body"] != "New body" || final["tags"] != nil {
		t.Errorf("upstream holds %v", final)
	}

	// A patch setting a field another write changed: 409, nothing forwarded.
	n := up.count("PATCH")
	r = send(t, h, up, "PATCH", url, `{"title":"Mine"}`, "If-Match", v1, "Content-Type", "application/merge-patch+json")
	if r.status != 409 {
		t.Fatalf("overlapping patch: %d %s", r.status, r.body)
	}
	if p := decode(t, r.body); !reflect.DeepEqual(p["conflicting_paths"], []any{"/title"}) {
		t.Errorf("problem %s", r.body)
	}
	if up.count("PATCH") != n {
		t.Error("the overlapping patch reached the upstream")
	}
	// A PATCH that is not a merge patch is not rebased.
	r = send(t, h, up, "PATCH", url, `{"other":1}`, "If-Match", v1)
	if r.status != 409 || r.header.Get("Conflict-Merged") != "" {
		t.Errorf("application/json PATCH: %d %v", r.status, r.header)
	}
}

// TestMergeVersionField: with `version json`, the body's version field is
// the precondition: the merged document carries the current one.
func TestMergeVersionField(t *testing.T) {
	h := mergeHandler(t, "version json /version\nhistory 8 1MiB\nmerge auto")
	seed := map[string][]map[string]any{"articles": {{"id": 1, "title": "Hello", "body": "x", "version": 1}}}
	up := &upstreamOf{api: legacyapi.New(seed, legacyapi.WithVersionField("version"))}
	const url = "http://vjson.test/articles/1"
	send(t, h, up, "GET", url, "")
	r := send(t, h, up, "PUT", url, `{"id":1,"title":"Theirs","body":"x","version":1}`)
	if r.status != 200 || r.header.Get("ETag") != `"2"` {
		t.Fatalf("first write: %d %v %s", r.status, r.header, r.body)
	}
	r = send(t, h, up, "PUT", url, `{"id":1,"title":"Hello","body":"mine","version":1}`)
	if r.status != 200 || r.header.Get("Conflict-Merged") != `"1" -> "2"` {
		t.Fatalf("stale write: %d %v %s", r.status, r.header, r.body)
	}
	sent := decode(t, []byte(up.last().body))
	if sent["version"] != float64(2) || sent["title"] != "Theirs" || sent["body"] != "mine" {
		t.Errorf("upstream got %v", sent)
	}
	// A version the client made up itself is not the precondition.
	r = send(t, h, up, "PUT", url, `{"id":1,"title":"Hello","body":"x","version":7}`, "If-Match", `"1"`)
	if r.status != 409 {
		t.Fatalf("made-up version: %d %s", r.status, r.body)
	}
}

// statusBodyUpstream answers writes with a status body ({"ok":true}) and
// the new ETag, as CouchDB does, and GETs with the document.
type statusBodyUpstream struct {
	mu   sync.Mutex
	doc  []byte
	rev  int
	gets int
}

func (s *statusBodyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method == http.MethodPut {
		s.doc, _ = io.ReadAll(r.Body)
		s.rev++
	} else {
		s.gets++
	}
	w.Header().Set("ETag", `"`+strings.Repeat("r", s.rev+1)+`"`)
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPut {
		_, _ = io.WriteString(w, `{"ok":true}`)
		return nil
	}
	_, _ = w.Write(s.doc)
	return nil
}

// TestMergeFetchesCurrent: a write response that is not the representation
// is not recorded; the stale write then fetches the current representation
// from the upstream under the write claim.
func TestMergeFetchesCurrent(t *testing.T) {
	h := mergeHandler(t, "history 8 1MiB\nmerge auto")
	up := &statusBodyUpstream{doc: []byte(`{"a":1,"b":1}`)}
	const url = "http://couch.test/db/doc"
	v1 := send(t, h, up, "GET", url, "").header.Get("ETag")
	send(t, h, up, "PUT", url, `{"a":2,"b":1}`, "If-Match", v1)
	if _, ok := h.history.Get("couch.test/db/doc", `"rr"`); ok {
		t.Fatal(`{"ok":true} was recorded as the representation`)
	}
	gets := up.gets
	r := send(t, h, up, "PUT", url, `{"a":1,"b":2}`, "If-Match", v1)
	if r.status != 200 || r.header.Get("Conflict-Merged") != `"r" -> "rr"` {
		t.Fatalf("stale write: %d %v %s", r.status, r.header, r.body)
	}
	if up.gets != gets+1 {
		t.Errorf("%d GETs to fetch the current representation, want 1", up.gets-gets)
	}
	if string(up.doc) != `{"a":2,"b":2}` {
		t.Errorf("upstream holds %s", up.doc)
	}
}

// TestMergeHelpWithoutMerge: without merge auto the 409 still says what
// changed; without history it says nothing more than before.
func TestMergeHelpWithoutMerge(t *testing.T) {
	for _, c := range []struct {
		block   string
		changes bool
	}{
		{"history 4", true},
		{"", false},
	} {
		h := mergeHandler(t, c.block)
		up := &upstreamOf{api: legacyapi.New(articleSeed())}
		url := "http://help" + strings.ReplaceAll(c.block, " ", "") + ".test/articles/1"
		v1 := send(t, h, up, "GET", url, "").header.Get("ETag")
		send(t, h, up, "PATCH", url, `{"title":"T2"}`, "If-Match", v1)
		r := send(t, h, up, "PATCH", url, `{"body":"B2"}`, "If-Match", v1)
		if r.status != 409 {
			t.Fatalf("%q: %d %s", c.block, r.status, r.body)
		}
		p := decode(t, r.body)
		_, has := p["changes"]
		if has != c.changes {
			t.Errorf("%q: changes present = %v: %s", c.block, has, r.body)
		}
		if _, ok := p["conflicting_paths"]; ok {
			t.Errorf("%q: conflicting_paths without merge auto", c.block)
		}
		if _, ok := p["current"]; ok {
			t.Errorf("%q: current without include_current", c.block)
		}
		if c.changes && !reflect.DeepEqual(p["changes"], map[string]any{"title": "T2"}) {
			t.Errorf("changes = %v", p["changes"])
		}
	}
}

// TestMergeReportMode: report mode never rewrites a write.
func TestMergeReportMode(t *testing.T) {
	h := mergeHandler(t, "mode report\nhistory 4\nmerge auto")
	up := &upstreamOf{api: legacyapi.New(articleSeed())}
	const url = "http://report.test/articles/1"
	v1 := send(t, h, up, "GET", url, "").header.Get("ETag")
	send(t, h, up, "PATCH", url, `{"title":"T2"}`, "If-Match", v1, "Content-Type", "application/merge-patch+json")
	r := send(t, h, up, "PATCH", url, `{"body":"B2"}`, "If-Match", v1, "Content-Type", "application/merge-patch+json")
	if r.status != 200 || r.header.Get("Conflict-Report") != "stale-version" || r.header.Get("Conflict-Merged") != "" {
		t.Errorf("%d %v", r.status, r.header)
	}
	if up.last().header.Get("If-Match") != v1 {
		t.Error("report mode rewrote If-Match")
	}
}

// TestMergeGzipRepresentation: a gzip-encoded JSON GET is recorded decoded.
func TestMergeGzipRepresentation(t *testing.T) {
	h := mergeHandler(t, "history 4")
	doc := `{"title":"Hello","body":"` + strings.Repeat("long ", 300) + `"}`
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("ETag", `W/"g1"`)
		zw := gzip.NewWriter(w)
		_, _ = io.WriteString(zw, doc)
		return zw.Close()
	})
	send(t, h, next, "GET", "http://gzip.test/a", "")
	got, ok := h.history.Get("gzip.test/a", `"g1"`)
	if !ok || string(got) != doc {
		t.Fatalf("recorded %v: %.40s", ok, got)
	}
	// Over max_body: streamed on, not recorded.
	h = mergeHandler(t, "history 4\nmax_body 1KiB")
	next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", `"big"`)
		_, _ = io.WriteString(w, doc)
		return nil
	})
	r := send(t, h, next, "GET", "http://gzip.test/big", "")
	if string(r.body) != doc {
		t.Error("the large body did not stream through intact")
	}
	if _, ok := h.history.Get("gzip.test/big", `"big"`); ok {
		t.Error("a body over max_body was recorded")
	}
}

// BenchmarkServeGETHistory: the read path with history off costs what it
// did; with history on, the JSON body is copied as it streams.
func BenchmarkServeGETHistory(b *testing.B) {
	for _, c := range []struct{ name, block string }{
		{"history=off", ""},
		{"history=on", "history 8 16MiB"},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := mergeHandler(b, c.block)
			req := httptest.NewRequest(http.MethodGet, "http://example.com/articles/1", nil)
			benchServe(b, h, req, true, http.StatusOK)
		})
	}
}
