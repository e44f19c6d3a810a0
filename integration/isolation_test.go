package integration

// Isolation through real Caddy: origins, aliases, callers, report mode,
// upstreams that authenticate themselves, and history that outlives its
// resource. Each promise holds at its boundary.

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// TestTwoOriginsTwoUpstreams: two sites on two ports of one host name in
// front of two upstreams are two origins: what one learns never turns a
// correct write on the other into a 409.
func TestTwoOriginsTwoUpstreams(t *testing.T) {
	a := startLegacy(t, map[string][]map[string]any{"articles": {{"id": 1, "title": "from A"}}})
	b := startLegacy(t, map[string][]map[string]any{"articles": {{"id": 1, "title": "from B"}}})
	cfg := strings.Replace(caddyfile(site("conflict", a)), "http://localhost:9080 {",
		"http://localhost:9081 {\n"+site("conflict", b)+"}\nhttp://localhost:9080 {", 1)
	caddytestInit(t, cfg)
	eB := do(t, nil, "GET", "http://localhost:9081/articles/1", nil).header.Get("ETag")
	eA := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	if eA == eB {
		t.Fatal("the two upstreams must send different ETags for this test")
	}
	p := do(t, nil, "PUT", "http://localhost:9081/articles/1", map[string]any{"id": 1, "title": "B2"}, "If-Match: "+eB)
	expectStatus(t, p, 200, "a correct write on the second origin")
	expectProblem(t, do(t, nil, "PUT", "http://localhost:9081/articles/1", map[string]any{"id": 1}, "If-Match: "+eB), 409, "stale-version")
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "A2"}, "If-Match: "+eA), 200, "the first origin")
}

// caddytestInit loads a whole Caddyfile (several sites) into the shared
// in-process Caddy.
func caddytestInit(t *testing.T, cfg string) {
	t.Helper()
	caddytest.NewTester(t).InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	purgeVersions(t)
}

// TestKeyAliases: under a custom key template, spellings of one URL
// (//a, /./a, /a/, an upper-case Host) are one key: a stale writer does
// not get past by spelling the URL differently.
func TestKeyAliases(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	startCaddy(t, site("conflict {\n\t\tkey {http.request.host}{http.request.uri.path}\n\t}", up))
	e1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "new"}, "If-Match: "+e1), 200, "write")
	for _, alias := range []string{"//articles/1", "/./articles/1", "/articles/1/", "/articles//1"} {
		expectProblem(t, do(t, nil, "PUT", alias, map[string]any{"id": 1}, "If-Match: "+e1), 409, "stale-version")
	}
	req, _ := http.NewRequest("PUT", base+"/articles/1", strings.NewReader(`{"id":1}`))
	req.Host = "LOCALHOST:9080"
	req.Header.Set("If-Match", e1)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 409 {
		t.Fatalf("Host: LOCALHOST:9080 with a stale ETag: %d, want 409", res.StatusCode)
	}
}

// fieldFilter is an upstream that authenticates its callers (HTTP Basic,
// as Caddy's basic_auth passes it on) and shows the field "secret" only to
// alice; the version (the ETag) is the resource's, the same for everyone.
func fieldFilter(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		if user == "alice" {
			api.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		var doc map[string]any
		if json.Unmarshal(body, &doc) == nil {
			delete(doc, "secret")
			body, _ = json.Marshal(doc)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		w.Write(body)
	})
}

func basicAuth(user string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":pw"))
}

// TestHistoryScope: two callers behind basic_auth share one version and
// one write lock per resource (the second is refused), and with
// history_scope the refusal never shows the second caller what the first
// one read or wrote.
func TestHistoryScope(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, scoped := range []bool{true, false} {
		api := legacyapi.New(map[string][]map[string]any{"notes": {{"id": 1, "title": "t", "secret": "s1"}}})
		up := httptest.NewServer(fieldFilter(api))
		scope := ""
		if scoped {
			scope = "\n\t\thistory_scope {http.auth.user.id}"
		}
		startCaddy(t, "\tbasic_auth {\n\t\talice "+string(hash)+"\n\t\tbob "+string(hash)+"\n\t}\n"+
			site("conflict {\n\t\thistory 8"+scope+"\n\t\tinclude_current\n\t}", strings.TrimPrefix(up.URL, "http://")))
		e1 := do(t, nil, "GET", "/notes/1", nil, basicAuth("bob")).header.Get("ETag")
		do(t, nil, "GET", "/notes/1", nil, basicAuth("alice"))
		p := do(t, nil, "PUT", "/notes/1", map[string]any{"id": 1, "title": "t2", "secret": "s2-alice-only"},
			basicAuth("alice"), "If-Match: "+e1)
		expectStatus(t, p, 200, "alice's write")
		stale := do(t, nil, "PUT", "/notes/1", map[string]any{"id": 1, "title": "bob's"}, basicAuth("bob"), "If-Match: "+e1)
		expectProblem(t, stale, 409, "stale-version") // one version and one lock for both callers
		leaked := strings.Contains(string(stale.body), "s2-alice-only")
		switch {
		case scoped && leaked:
			t.Fatalf("with history_scope, bob's 409 shows alice's data: %s", stale.body)
		case scoped && !strings.Contains(string(stale.body), `"changes"`):
			t.Fatalf("with history_scope, bob's 409 lacks the changes of his own view: %s", stale.body)
		case !scoped && !leaked:
			t.Fatalf("without history_scope the representations are shared (the README says so); the test lost its point: %s", stale.body)
		}
		up.Close()
	}
}

// TestReportModeForwardsUncertain: in report mode a write to an uncertain
// key whose re-read fails still reaches the upstream, and the client gets
// the upstream's answer with Conflict-Report, never an empty 200.
func TestReportModeForwardsUncertain(t *testing.T) {
	var broken atomic.Bool
	var applied atomic.Int64
	api := legacyapi.New(legacyapi.DefaultSeed())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			applied.Add(1)
		}
		if broken.Load() {
			api.ServeHTTP(httptest.NewRecorder(), r) // applied, then a 502
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		api.ServeHTTP(w, r)
	}))
	defer up.Close()
	startCaddy(t, site("conflict {\n\t\tmode report\n\t}", strings.TrimPrefix(up.URL, "http://")))
	e1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	broken.Store(true)
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "a"}, "If-Match: "+e1), 502, "apply-then-502")
	p := do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "b"}, "If-Match: "+e1)
	if p.status != 502 || p.header.Get("Conflict-Report") != "upstream-unavailable" {
		t.Fatalf("report mode, uncertain key, failing re-read: %d Conflict-Report %q %s; want the upstream's 502 with the report",
			p.status, p.header.Get("Conflict-Report"), p.body)
	}
	if applied.Load() != 2 {
		t.Fatalf("the upstream received %d writes, want 2: report mode must forward every write", applied.Load())
	}
}

// bearer is an upstream that authenticates by itself: without the right
// token every request gets 401.
func bearer(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer good" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"unauthorized"}`)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// TestVerifyUpstreamAuthenticates: with verify, a client that the upstream
// refuses gets the upstream's 401, not a 409 that tells it the current
// version; a client with the token gets the 409.
func TestVerifyUpstreamAuthenticates(t *testing.T) {
	up := httptest.NewServer(bearer(legacyapi.New(legacyapi.DefaultSeed())))
	defer up.Close()
	upstream := strings.TrimPrefix(up.URL, "http://")
	for _, verify := range []bool{false, true} {
		block := "conflict"
		if verify {
			block = "conflict {\n\t\tverify\n\t}"
		}
		startCaddy(t, site(block, upstream))
		e1 := do(t, nil, "GET", "/articles/1", nil, "Authorization: Bearer good").header.Get("ETag")
		expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": fmt.Sprint("x", verify)},
			"Authorization: Bearer good", "If-Match: "+e1), 200, "authorized write")
		anon := do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1}, "If-Match: "+e1)
		if !verify {
			// Without verify the proxy answers before the upstream could
			// refuse: the README says to use verify in front of such an API.
			expectProblem(t, anon, 409, "stale-version")
			continue
		}
		if anon.status != 401 || anon.header.Get("WWW-Authenticate") == "" || anon.header.Get("ETag") != "" ||
			strings.Contains(string(anon.body), "current_version") {
			t.Fatalf("verify, unauthenticated stale PUT: %d %v %s; want the upstream's 401 and no version", anon.status, anon.header, anon.body)
		}
		p := expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1}, "Authorization: Bearer good", "If-Match: "+e1), 409, "stale-version")
		if p["current_version"] == nil {
			t.Fatalf("an authorized stale PUT gets the current version: %v", p)
		}
	}
}

// TestHistoryDroppedWithResource: a DELETE through the proxy and an admin
// purge drop the key's representations: a re-created resource whose
// versions restart is never explained with the old document.
func TestHistoryDroppedWithResource(t *testing.T) {
	api := legacyapi.New(map[string][]map[string]any{"notes": {}}, legacyapi.WithVersionField("version"))
	up := httptest.NewServer(api)
	defer up.Close()
	startCaddy(t, site("conflict {\n\t\tversion json /version\n\t\thistory 8\n\t}", strings.TrimPrefix(up.URL, "http://")))
	expectStatus(t, do(t, nil, "POST", "/notes", map[string]any{"id": 9, "title": "old-secret"}), 201, "create")
	g := do(t, nil, "GET", "/notes/9", nil)
	doc := g.json(t)
	doc["title"] = "old-secret-2"
	expectStatus(t, do(t, nil, "PUT", "/notes/9", doc, "If-Match: "+g.header.Get("ETag")), 200, "second version")
	e2 := do(t, nil, "GET", "/notes/9", nil).header.Get("ETag")
	expectStatus(t, do(t, nil, "DELETE", "/notes/9", nil, "If-Match: "+e2), 200, "delete")
	// Created again: its version restarts at 1.
	expectStatus(t, do(t, nil, "POST", "/notes", map[string]any{"id": 9, "title": "new"}), 201, "re-create")
	if e1 := do(t, nil, "GET", "/notes/9", nil).header.Get("ETag"); e1 != `"1"` {
		t.Fatalf("the re-created note has version %s, want \"1\"", e1)
	}
	// A client still holding the old resource's second version.
	stale := expectProblem(t, do(t, nil, "PUT", "/notes/9", map[string]any{"id": 9, "version": 2}, "If-Match: "+e2), 409, "stale-version")
	if _, ok := stale["changes"]; ok || strings.Contains(string(mustJSON(stale)), "old-secret") {
		t.Fatalf("the re-created resource's 409 is explained with the deleted one's document: %v", stale)
	}

	// An admin purge drops the representations too.
	g = do(t, nil, "GET", "/notes/9", nil)
	eA := g.header.Get("ETag")
	doc = g.json(t)
	doc["title"] = "purged-secret"
	expectStatus(t, do(t, nil, "PUT", "/notes/9", doc, "If-Match: "+eA), 200, "write")
	purge := do(t, nil, "DELETE", "http://localhost:2999/conflict/versions?key=localhost:9080/notes/9", nil)
	expectStatus(t, purge, 200, "purge")
	do(t, nil, "GET", "/notes/9", nil)
	stale = expectProblem(t, do(t, nil, "PUT", "/notes/9", map[string]any{"id": 9}, "If-Match: "+eA), 409, "stale-version")
	if _, ok := stale["changes"]; ok {
		t.Fatalf("after a purge the 409 is still explained from the purged history: %v", stale)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
