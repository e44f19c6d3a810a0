package integration

// Real-world traffic through real Caddy: WebDAV clients that LOCK, byte
// ranges, validators the proxy does not track, keys it never saw, slow
// clients, method override, queries and other methods. Each case is a false
// rejection (or a lost update) that was reproduced before its fix.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

const lockBody = `<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>
<D:owner>test</D:owner></D:lockinfo>`

const proppatchBody = `<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:test"><D:set><D:prop><Z:color>blue</Z:color></D:prop></D:set></D:propertyupdate>`

// settledETag reads the resource's ETag once Apache sends a strong one
// (mod_dav's ETags are weak for about a second after a write, and a weak
// tag never matches If-Match).
func settledETag(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g := do(t, nil, "GET", path, nil)
		expectStatus(t, g, 200, "GET "+path)
		e := g.header.Get("ETag")
		if !strings.HasPrefix(e, "W/") || time.Now().After(deadline) {
			return e
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestApacheWebDAVClient: a WebDAV client's LOCK, PUT under the lock,
// UNLOCK, PROPPATCH and COPY through the proxy never make the ETag the
// server itself reports look stale; a truly stale PUT is still refused.
func TestApacheWebDAVClient(t *testing.T) {
	apache, _ := backends.StartApacheDAV(t)
	startCaddy(t, site("conflict", apache))
	text := func(s string) string { return s } // bodies are plain text, sent as given

	expectStatus(t, do(t, nil, "PUT", "/doc.txt", text("one"), "Content-Type: text/plain"), 201, "create")
	e1 := settledETag(t, "/doc.txt")

	lock := do(t, nil, "LOCK", "/doc.txt", lockBody, "Content-Type: application/xml", "Timeout: Second-60")
	expectStatus(t, lock, 200, "LOCK")
	token := lock.header.Get("Lock-Token")
	if token == "" {
		t.Fatalf("LOCK gave no Lock-Token: %v", lock.header)
	}
	// What clients such as davfs2 and Windows do next: save under the lock,
	// with the ETag they read.
	put := do(t, nil, "PUT", "/doc.txt", text("two"), "Content-Type: text/plain",
		"If-Match: "+e1, "If: ("+token+")")
	if put.status != 204 && put.status != 201 {
		t.Fatalf("PUT under the lock with the server's ETag: %d %s (the LOCK must not supersede it)", put.status, put.body)
	}
	e2 := settledETag(t, "/doc.txt")
	expectStatus(t, do(t, nil, "UNLOCK", "/doc.txt", nil, "Lock-Token: "+token), 204, "UNLOCK")
	expectStatus(t, do(t, nil, "PROPPATCH", "/doc.txt", proppatchBody, "Content-Type: application/xml"), 207, "PROPPATCH")
	expectStatus(t, do(t, nil, "COPY", "/doc.txt", nil, "Destination: "+base+"/copy.txt"), 201, "COPY")

	// After all of them, the ETag the server reports is still accepted.
	if g := do(t, nil, "GET", "/doc.txt", nil); g.header.Get("ETag") != e2 {
		t.Fatalf("Apache's ETag changed: %q -> %q", e2, g.header.Get("ETag"))
	}
	put = do(t, nil, "PUT", "/doc.txt", text("three"), "Content-Type: text/plain", "If-Match: "+e2)
	if put.status != 204 && put.status != 201 {
		t.Fatalf("PUT with the server's current ETag after UNLOCK, PROPPATCH, COPY: %d %s", put.status, put.body)
	}
	// The copy is its own resource; the source's ETag still names the source.
	settledETag(t, "/doc.txt")

	// A truly stale write is refused before it reaches Apache.
	stale := do(t, nil, "PUT", "/doc.txt", text("stale"), "Content-Type: text/plain", "If-Match: "+e1)
	expectProblem(t, stale, 409, "stale-version")
	if g := do(t, nil, "GET", "/doc.txt", nil); string(g.body) != "three" {
		t.Fatalf("the stale write reached Apache: %q", g.body)
	}
}

// TestMoveTombstonesSource: after a MOVE the source is gone (a write
// claiming its old version gets deleted) and the destination is unknown
// (forwarded).
func TestMoveTombstonesSource(t *testing.T) {
	nginx, _ := backends.StartNginxDAV(t)
	startCaddy(t, site("conflict", nginx))
	expectStatus(t, do(t, nil, "PUT", "/a.txt", "aaa", "Content-Type: text/plain"), 201, "create")
	e := do(t, nil, "GET", "/a.txt", nil).header.Get("ETag")
	if m := do(t, nil, "MOVE", "/a.txt", nil, "Destination: "+base+"/b.txt"); m.status != 201 && m.status != 204 {
		t.Fatalf("MOVE: %d %s", m.status, m.body)
	}
	expectProblem(t, do(t, nil, "PUT", "/a.txt", "x", "Content-Type: text/plain", "If-Match: "+e), 409, "deleted")
	// nginx keeps the mtime and size: b.txt has a's ETag, which nothing superseded.
	if p := do(t, nil, "PUT", "/b.txt", "bbb", "Content-Type: text/plain", "If-Match: "+e); p.status != 204 {
		t.Fatalf("PUT to the MOVE's destination: %d %s", p.status, p.body)
	}
}

// TestLitmusThroughProxy: the litmus WebDAV suites pass through the proxy
// in front of Apache mod_dav as they pass against Apache alone.
func TestLitmusThroughProxy(t *testing.T) {
	apache, _ := backends.StartApacheDAV(t)
	startCaddy(t, site("conflict", apache))
	report := backends.Litmus(t, base+"/")
	if failed := report.Failed(); len(failed) > 0 {
		t.Fatalf("litmus through the proxy: %d of %d failed: %v\n%s", len(failed), len(report.Tests), failed, report.Output)
	}
	t.Logf("litmus through the proxy: %d tests passed", len(report.Tests))
}

// TestNginxHashRange: in hash mode a byte range is not hashed: a writer
// holding the whole file's version is not refused after someone read a
// range of it.
func TestNginxHashRange(t *testing.T) {
	nginx, _ := backends.StartNginxDAV(t)
	startCaddy(t, site("conflict {\n\t\tversion hash\n\t}", nginx))
	body := strings.Repeat("0123456789", 100)
	expectStatus(t, do(t, nil, "PUT", "/r.txt", body, "Content-Type: text/plain"), 201, "create")
	g := do(t, nil, "GET", "/r.txt", nil)
	h := g.header.Get("ETag")
	if h == "" {
		t.Fatal("no hash ETag")
	}
	rg := do(t, nil, "GET", "/r.txt", nil, "Range: bytes=0-99")
	expectStatus(t, rg, 206, "range")
	if len(rg.body) != 100 {
		t.Fatalf("range body %d bytes", len(rg.body))
	}
	p := do(t, nil, "PUT", "/r.txt", body+"!", "Content-Type: text/plain", "If-Match: "+h)
	if p.status != 204 {
		t.Fatalf("PUT with the whole file's hash after a range read: %d %s", p.status, p.body)
	}
	expectProblem(t, do(t, nil, "PUT", "/r.txt", "late", "Content-Type: text/plain", "If-Match: "+h), 409, "stale-version")
}

// TestNginxLastModifiedIfMatch: in last_modified mode an If-Match with the
// upstream's own ETag is not compared with dates: it is forwarded (nginx
// ignores it); a stale If-Unmodified-Since is still refused.
func TestNginxLastModifiedIfMatch(t *testing.T) {
	nginx, _ := backends.StartNginxDAV(t)
	startCaddy(t, site("conflict {\n\t\tversion last_modified\n\t}", nginx))
	expectStatus(t, do(t, nil, "PUT", "/m.txt", "one", "Content-Type: text/plain"), 201, "create")
	g := do(t, nil, "GET", "/m.txt", nil)
	etag, lm := g.header.Get("ETag"), g.header.Get("Last-Modified")
	if etag == "" || lm == "" {
		t.Fatalf("nginx sent ETag %q Last-Modified %q", etag, lm)
	}
	if p := do(t, nil, "PUT", "/m.txt", "two", "Content-Type: text/plain", "If-Match: "+etag); p.status != 204 {
		t.Fatalf("If-Match with nginx's ETag in last_modified mode: %d %s", p.status, p.body)
	}
	time.Sleep(1100 * time.Millisecond) // Last-Modified has one-second granularity
	expectStatus(t, do(t, nil, "PUT", "/m.txt", "three", "Content-Type: text/plain"), 204, "third write")
	do(t, nil, "GET", "/m.txt", nil) // learn the new date
	expectProblem(t, do(t, nil, "PUT", "/m.txt", "stale", "Content-Type: text/plain", "If-Unmodified-Since: "+lm), 409, "stale-version")
}

// TestNeverSeenKeysOnRefusingUpstream: thousands of keys the proxy never
// saw, written with preconditions in front of an upstream that refuses
// reads: every write is forwarded, never a 502 (a never-seen key is never
// "dropped"; and a dropped key whose re-read is refused is forwarded).
func TestNeverSeenKeysOnRefusingUpstream(t *testing.T) {
	var writes atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			w.WriteHeader(http.StatusForbidden)
		default:
			io.Copy(io.Discard, r.Body)
			writes.Add(1)
			w.Header().Set("ETag", fmt.Sprintf(`"w%d"`, writes.Load()))
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer up.Close()
	startCaddy(t, site("conflict {\n\t\tcache_size 1MiB\n\t}", strings.TrimPrefix(up.URL, "http://")))
	client := counterClient(false)
	const keys = 3000
	bad := map[int]int{}
	for i := range keys {
		p := do(t, client, "PUT", fmt.Sprintf("/fresh/%d", i), "x", `If-Match: "v0"`)
		if p.status != 204 {
			bad[p.status]++
		}
	}
	if len(bad) > 0 {
		t.Fatalf("writes to %d never-seen keys: statuses other than 204: %v", keys, bad)
	}
	if writes.Load() != keys {
		t.Fatalf("the upstream saw %d writes, want %d", writes.Load(), keys)
	}
}

// TestSlowBodyDoesNotHoldLock: a client that trickles its body holds no
// other writer of the key back: the body is received before the key's lock
// is taken, and the slow write is decided on the state the fast one left.
func TestSlowBodyDoesNotHoldLock(t *testing.T) {
	api := legacyapi.New(legacyapi.DefaultSeed())
	up := httptest.NewServer(api)
	defer up.Close()
	startCaddy(t, site("conflict {\n\t\tlock_timeout 1s\n\t}", strings.TrimPrefix(up.URL, "http://")))
	g := do(t, nil, "GET", "/articles/1", nil)
	e := g.header.Get("ETag")

	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"id":1,"title":"slow","views":0}`
	fmt.Fprintf(conn, "PUT /articles/1 HTTP/1.1\r\nHost: localhost:9080\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nIf-Match: %s\r\n\r\n%s", len(body), e, body[:5])
	time.Sleep(300 * time.Millisecond) // the slow client is inside the proxy, its body unfinished

	start := time.Now()
	fast := do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "fast", "views": 0}, "If-Match: "+e)
	if fast.status != 200 || time.Since(start) > 700*time.Millisecond {
		t.Fatalf("fast writer: %d after %v (held back by the slow body?): %s", fast.status, time.Since(start), fast.body)
	}
	time.Sleep(1500 * time.Millisecond) // past lock_timeout: a lock held by the slow client would show now
	fmt.Fprint(conn, body[5:])
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 409 {
		t.Fatalf("the slow write, based on the version the fast one replaced: %d, want 409 stale-version", res.StatusCode)
	}
	if rec, _ := api.Record("articles", "1"); rec["title"] != "fast" {
		t.Fatalf("the upstream holds %v, want the fast write", rec)
	}
}

// TestMethodOverride: in front of an upstream that serves POST with
// X-HTTP-Method-Override: PUT as a PUT (Express's method-override), a stale
// write sent that way is refused like a PUT; `method_override off` turns
// that off.
func TestMethodOverride(t *testing.T) {
	api := legacyapi.New(legacyapi.DefaultSeed())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := r.Header.Get("X-HTTP-Method-Override"); r.Method == http.MethodPost && m != "" {
			r.Method = strings.ToUpper(m)
		}
		api.ServeHTTP(w, r)
	}))
	defer up.Close()
	upstream := strings.TrimPrefix(up.URL, "http://")
	startCaddy(t, site("conflict", upstream))
	e1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	doc := map[string]any{"id": 1, "title": "first", "views": 0}
	p := do(t, nil, "POST", "/articles/1", doc, "X-HTTP-Method-Override: PUT", "If-Match: "+e1)
	expectStatus(t, p, 200, "overridden PUT with the current ETag")
	doc["title"] = "lost?"
	expectProblem(t, do(t, nil, "POST", "/articles/1", doc, "X-HTTP-Method-Override: PUT", "If-Match: "+e1), 409, "stale-version")
	expectProblem(t, do(t, nil, "POST", "/articles/1", doc, "X-HTTP-Method: PUT", "If-Match: "+e1), 409, "stale-version")
	expectProblem(t, do(t, nil, "POST", "/articles/1", doc, "X-Method-Override: put", "If-Match: "+e1), 409, "stale-version")
	if rec, _ := api.Record("articles", "1"); rec["title"] != "first" {
		t.Fatalf("a stale overridden PUT was applied: %v", rec)
	}

	reloadCaddy(t, site("conflict {\n\t\tmethod_override off\n\t}", upstream))
	purgeVersions(t)
	do(t, nil, "GET", "/articles/1", nil)
	p = do(t, nil, "POST", "/articles/1", doc, "X-HTTP-Method-Override: PUT", "If-Match: "+e1)
	expectStatus(t, p, 200, "method_override off: the POST passes as a POST")
}

// TestQueryWriteNotLearned: a write to a URL with a query string is the
// key's write (it supersedes what was current) but its response's version
// is another representation's (here the upstream answers ?view=summary with
// the summary's ETag): it is not learned as the key's, so a writer holding
// the resource's real current ETag is not refused.
func TestQueryWriteNotLearned(t *testing.T) {
	var version atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			io.Copy(io.Discard, r.Body)
			version.Add(1)
		}
		etag := fmt.Sprintf(`"v%d"`, version.Load())
		if r.URL.Query().Get("view") == "summary" {
			etag = fmt.Sprintf(`"summary-v%d"`, version.Load())
		}
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusOK)
	}))
	defer up.Close()
	startCaddy(t, site("conflict", strings.TrimPrefix(up.URL, "http://")))
	e0 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	p := do(t, nil, "PUT", "/doc?view=summary", "x", "If-Match: "+e0)
	expectStatus(t, p, 200, "PUT with a query")
	if st := adminGet(t, "localhost:9080/doc"); st["current_version"] != nil {
		t.Fatalf("the query write's version was learned as the key's: %v", st)
	}
	// Another client read the resource directly from the upstream (or
	// through another route): its ETag is the resource's current one.
	expectStatus(t, do(t, nil, "PUT", "/doc", "y", `If-Match: "v1"`), 200, "PUT with the resource's current ETag")
	expectProblem(t, do(t, nil, "PUT", "/doc", "z", "If-Match: "+e0), 409, "stale-version")
}

// adminGet reads one key's state from the admin API (nil when unknown).
func adminGet(t *testing.T, key string) map[string]any {
	t.Helper()
	r := do(t, nil, "GET", "http://localhost:2999/conflict/versions?key="+key, nil)
	if r.status == 404 {
		return nil
	}
	expectStatus(t, r, 200, "admin GET "+key)
	return r.json(t)
}

// corsPage edits /articles/1 through the proxy at localhost:9080 from
// another origin with fetch(), as a web app in front of json-server does,
// and writes what it saw into #out.
const corsPage = `<!doctype html><html><body><pre id="out">pending</pre><script>
const out = {};
(async () => {
  try {
    const api = "http://localhost:9080/articles/1";
    let r = await fetch(api);
    out.getStatus = r.status;
    out.etag = r.headers.get("ETag");
    const doc = await r.json();
    doc.title = "from the browser";
    const put = (etag) => fetch(api, {method: "PUT", body: JSON.stringify(doc),
      headers: {"Content-Type": "application/json", "If-Match": etag}});
    r = await put(out.etag);
    out.putStatus = r.status;
    out.newEtag = r.headers.get("ETag");
    r = await put(out.etag);
    out.staleStatus = r.status;
    out.staleType = r.headers.get("Content-Type");
    out.staleEtag = r.headers.get("ETag");
    out.problem = await r.json();
  } catch (e) {
    out.error = String(e);
  }
  document.getElementById("out").textContent = JSON.stringify(out);
})();
</script></body></html>`

// TestBrowserCrossOrigin: headless Chromium on one origin edits a
// json-server resource through the proxy on another: it reads the ETag,
// its PUT with If-Match succeeds, and a stale PUT comes back as a readable
// 409 problem with the current ETag, not as a network error.
func TestBrowserCrossOrigin(t *testing.T) {
	backends.RequireChromium(t)
	js := backends.StartJSONServer(t, jsonServerSeed())
	startCaddy(t, site("conflict", strings.TrimPrefix(js, "http://")))
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, corsPage)
	}))
	defer page.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := backends.DumpDOM(ctx, page.URL) // 127.0.0.1:PORT: another origin than localhost:9080
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<pre id="out">(.*?)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no #out in the DOM:\n%s", dom)
	}
	var out struct {
		GetStatus, PutStatus, StaleStatus          int
		Etag, NewEtag, StaleType, StaleEtag, Error string
		Problem                                    map[string]any
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &out); err != nil {
		t.Fatalf("#out is not the page's JSON: %v: %s", err, m[1])
	}
	if out.Error != "" {
		t.Fatalf("the page's fetch failed: %s", out.Error)
	}
	if out.GetStatus != 200 || out.Etag == "" {
		t.Fatalf("the page could not read the ETag: %+v", out)
	}
	if out.PutStatus != 200 || out.NewEtag == "" {
		t.Fatalf("the page's PUT with If-Match: %+v", out)
	}
	if out.StaleStatus != 409 || out.StaleType != "application/problem+json" || out.StaleEtag != out.NewEtag {
		t.Fatalf("the stale PUT, as the page saw it: %+v", out)
	}
	if typ, _ := out.Problem["type"].(string); !strings.HasSuffix(typ, "stale-version") {
		t.Fatalf("the page read the problem %v", out.Problem)
	}
}

// TestVariants: a resource served as JSON and as XML (Vary: Accept, an
// ETag per variant). Each variant read since the last write is current:
// reading one variant never makes a writer holding the other's current ETag
// get a 409; a write through the proxy supersedes every variant, so a writer
// holding an old ETag of either gets stale-version; a new version of one
// variant replaces only that variant's.
func TestVariants(t *testing.T) {
	var rev atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			io.Copy(io.Discard, r.Body)
			rev.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Vary", "Accept")
		if strings.Contains(r.Header.Get("Accept"), "xml") {
			w.Header().Set("ETag", fmt.Sprintf(`"xml-%d"`, rev.Load()))
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, "<doc rev='%d'/>", rev.Load())
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"json-%d"`, rev.Load()))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"rev":%d}`, rev.Load())
	}))
	defer up.Close()
	startCaddy(t, site("conflict", strings.TrimPrefix(up.URL, "http://")))
	xml, json := "Accept: application/xml", "Accept: application/json"
	etag := func(accept string) string {
		t.Helper()
		r := do(t, nil, "GET", "/doc", nil, accept)
		if r.status != 200 || r.header.Get("ETag") == "" {
			t.Fatalf("GET %s: %d, ETag %q", accept, r.status, r.header.Get("ETag"))
		}
		return r.header.Get("ETag")
	}
	put := func(tag string) response {
		t.Helper()
		return do(t, nil, "PUT", "/doc", "<doc/>", "Content-Type: application/xml", "If-Match: "+tag)
	}
	checkHolds := func(what, tag string) {
		t.Helper()
		if p := put(tag); p.status != 204 {
			t.Fatalf("%s: PUT with If-Match %s: %d %s", what, tag, p.status, p.body)
		}
	}

	x0 := etag(xml)
	j0 := etag(json) // another client reads the other variant
	// Both variants' ETags are current: a writer holding either one passes.
	// The first write (with the XML ETag) supersedes both.
	checkHolds("XML's current ETag after a JSON read", x0)
	expectProblem(t, put(x0), 409, "stale-version")
	expectProblem(t, put(j0), 409, "stale-version")

	x1 := etag(xml)
	j1 := etag(json)
	checkHolds("JSON's current ETag after both were read", j1)
	// That write superseded the XML variant's version too: a stale writer
	// holding the XML ETag it read before the write is refused.
	p := expectProblem(t, put(x1), 409, "stale-version")
	if pv, _ := p["provided_versions"].([]any); len(pv) != 1 || pv[0] != x1 {
		t.Errorf("provided_versions = %v, want [%s]", p["provided_versions"], x1)
	}

	// Read both variants, then the upstream moves behind the proxy's back
	// and only the JSON variant is read again: its new ETag replaces only
	// JSON's; the XML ETag read before stays current (the proxy cannot know
	// it moved), the old JSON ETag is stale.
	x2 := etag(xml)
	j2 := etag(json)
	rev.Add(1)
	j3 := etag(json)
	if j3 == j2 {
		t.Fatalf("the upstream did not move: %s", j3)
	}
	expectProblem(t, put(j2), 409, "stale-version")
	checkHolds("the XML ETag read before a new JSON version", x2)
	expectProblem(t, put(j3), 409, "stale-version") // superseded by that write
}
