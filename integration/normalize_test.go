package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// rawClient shows responses as they leave Caddy: it sends no
// Accept-Encoding of its own and decodes nothing (do still gunzips a body
// sent with Content-Encoding: gzip, after the headers were recorded).
var rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// raw is the legacy API's /raw/{status} path answering exactly what q says.
func raw(status int, q url.Values) string {
	return "/raw/" + strconv.Itoa(status) + "?" + q.Encode()
}

// startRaw starts the legacy API (for its /raw endpoint) behind Caddy with
// the given conflict block. /big/json and /big/html are 409s with 64 KiB
// bodies, streamed in flushed 4 KiB pieces: /raw cannot carry them, the
// query would pass Caddy's 16 KiB request header limit.
func startRaw(t *testing.T, conflictBlock string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/", legacyapi.New(map[string][]map[string]any{}))
	mux.HandleFunc("/big/{kind}", func(w http.ResponseWriter, r *http.Request) {
		var body string
		switch r.PathValue("kind") {
		case "json":
			w.Header().Set("Content-Type", "application/json")
			body = `{"reason":"Document update conflict.","log":"` + strings.Repeat("x", 64<<10) + `"}`
		default:
			w.Header().Set("Content-Type", "text/html")
			body = "<html><body><h1>Edit conflict</h1><p>" + strings.Repeat("Someone else saved first. ", 2600) + "</p></body></html>"
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusConflict)
		for len(body) > 0 {
			n := min(len(body), 4<<10)
			io.WriteString(w, body[:n])
			http.NewResponseController(w).Flush()
			body = body[n:]
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	up := strings.TrimPrefix(srv.URL, "http://")
	startCaddy(t, site(conflictBlock, up))
	return up
}

// expectContentLength checks that Content-Length was sent and is the
// length of the body the client read.
func expectContentLength(t *testing.T, r response) {
	t.Helper()
	cl := r.header.Get("Content-Length")
	if cl != strconv.Itoa(len(r.body)) {
		t.Fatalf("Content-Length %q, body %d bytes", cl, len(r.body))
	}
}

const couchDB409 = `{"error":"conflict","reason":"Document update conflict."}`

// TestNormalizeNginxDAV: nginx's own 409 pages (MKCOL under a missing
// parent, PUT to a collection URI) reach the client as problem documents
// whose detail is text, whether nginx gzipped the page or not.
func TestNormalizeNginxDAV(t *testing.T) {
	up, _ := backends.StartNginxDAV(t)
	startCaddy(t, site("conflict", strings.TrimPrefix(up, "http://")))
	for _, c := range []struct {
		name           string
		method, path   string
		acceptEncoding string
	}{
		// Caddy's transport asks for gzip itself and decodes it.
		{"MKCOL", "MKCOL", "/missing/child/", ""},
		// The client's gzip goes to nginx, which gzips its page: decoded here.
		{"MKCOL gzip", "MKCOL", "/missing/child/", "gzip"},
		// A browser's list, br not asked for upstream; nginx refuses a PUT
		// to a collection URI with its 409 page (a PUT into a missing
		// folder gets 500 from nginx, not 409).
		{"PUT browser", "PUT", "/folder/", "gzip, deflate, br, zstd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var headers []string
			if c.acceptEncoding != "" {
				headers = append(headers, "Accept-Encoding: "+c.acceptEncoding)
			}
			var body any
			if c.method == http.MethodPut {
				body = "x"
			}
			r := do(t, rawClient, c.method, c.path, body, headers...)
			p := expectProblem(t, r, 409, "upstream-conflict")
			if ce := r.header.Get("Content-Encoding"); ce != "" {
				t.Fatalf("Content-Encoding %q on a rewritten response", ce)
			}
			expectContentLength(t, r)
			detail, _ := p["detail"].(string)
			if strings.ContainsAny(detail, "<>") || detail != "409 Conflict" {
				t.Fatalf("detail %q, want nginx's page as text: 409 Conflict", detail)
			}
			if p["instance"] != c.path {
				t.Fatalf("instance %v, want %s", p["instance"], c.path)
			}
		})
	}
}

// TestNormalizeLegacyBodies: what each kind of upstream 409 becomes.
func TestNormalizeLegacyBodies(t *testing.T) {
	startRaw(t, "conflict {\n\t\tmax_body 1KiB\n\t}")

	t.Run("JSON", func(t *testing.T) {
		r := do(t, rawClient, "PUT", raw(409, url.Values{"ct": {"application/json"}, "body": {couchDB409}}), `{}`)
		p := expectProblem(t, r, 409, "upstream-conflict")
		expectContentLength(t, r)
		if p["detail"] != "Document update conflict." {
			t.Fatalf("detail %q, want CouchDB's reason", p["detail"])
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(r.body, &m)
		if string(m["upstream"]) != couchDB409 {
			t.Fatalf("upstream member %s, want %s", m["upstream"], couchDB409)
		}
	})

	t.Run("gzip JSON", func(t *testing.T) {
		r := do(t, rawClient, "PUT", raw(409, url.Values{"ct": {"application/json"}, "body": {couchDB409}, "gzip": {"1"}}), `{}`)
		p := expectProblem(t, r, 409, "upstream-conflict")
		if ce := r.header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("Content-Encoding %q: the decoded problem must not claim an encoding", ce)
		}
		expectContentLength(t, r)
		if p["detail"] != "Document update conflict." || p["upstream"] == nil {
			t.Fatalf("gzip body not decoded: %s", r.body)
		}
	})

	t.Run("problem+json kept", func(t *testing.T) {
		own := `{"type":"https://shop.example/problems/out-of-stock","title":"Out of stock","status":409,"detail":"Item 7 is sold out.","balance":30}`
		r := do(t, rawClient, "PUT", raw(409, url.Values{"ct": {"application/problem+json"}, "body": {own}}), `{}`)
		p := expectProblem(t, r, 409, "out-of-stock")
		if p["type"] != "https://shop.example/problems/out-of-stock" || p["detail"] != "Item 7 is sold out." ||
			p["title"] != "Out of stock" || p["balance"] != 30.0 {
			t.Fatalf("upstream problem not kept: %s", r.body)
		}
		expectContentLength(t, r)
	})

	t.Run("empty", func(t *testing.T) {
		r := do(t, rawClient, "PUT", raw(409, url.Values{"ct": {"application/json"}}), `{}`)
		p := expectProblem(t, r, 409, "upstream-conflict")
		if p["detail"] != "The request conflicts with the current state of the resource." {
			t.Fatalf("detail %q, want the standard one", p["detail"])
		}
		expectContentLength(t, r)
	})

	t.Run("over max_body", func(t *testing.T) {
		r := do(t, rawClient, "PUT", "/big/json", `{}`)
		p := expectProblem(t, r, 409, "upstream-conflict")
		expectContentLength(t, r)
		if p["detail"] != "Document update conflict." || p["upstream"] != nil {
			t.Fatalf("a cut body: detail %q, upstream embedded %v; want the message before the cut and no embedded JSON",
				p["detail"], p["upstream"] != nil)
		}
		if len(r.body) > 2<<10 {
			t.Fatalf("problem of %d bytes from a 64KiB body, max_body 1KiB", len(r.body))
		}
	})

	t.Run("over max_body, HTML", func(t *testing.T) {
		r := do(t, rawClient, "PUT", "/big/html", `{}`)
		p := expectProblem(t, r, 409, "upstream-conflict")
		expectContentLength(t, r)
		if d, _ := p["detail"].(string); strings.ContainsAny(d, "<>") || !strings.HasPrefix(d, "Edit conflict") {
			t.Fatalf("detail %q", d)
		}
	})

	t.Run("headers kept", func(t *testing.T) {
		q := url.Values{"ct": {"application/json"}, "body": {couchDB409}, "etag": {`"v2"`}, "header": {
			"Retry-After: 3", "Location: /articles/9", `Link: </articles/9>; rel="latest-version"`,
			"Cache-Control: no-cache", "Vary: Accept",
		}}
		r := do(t, rawClient, "PUT", raw(409, q), `{}`)
		expectProblem(t, r, 409, "upstream-conflict")
		expectContentLength(t, r)
		for name, want := range map[string]string{
			"ETag": `"v2"`, "Retry-After": "3", "Location": "/articles/9", "Link": `</articles/9>; rel="latest-version"`,
			"Cache-Control": "no-cache", "Vary": "Accept",
		} {
			if got := r.header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		q := url.Values{"ct": {"application/json"}, "body": {couchDB409}, "etag": {`"v2"`}}
		req, _ := http.NewRequest(http.MethodHead, base+raw(409, q), nil)
		res, err := rawClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 409 || res.Header.Get("Content-Type") != "application/problem+json" ||
			res.Header.Get("ETag") != `"v2"` || len(body) != 0 {
			t.Fatalf("HEAD: %d %q ETag %q, %d body bytes", res.StatusCode, res.Header.Get("Content-Type"),
				res.Header.Get("ETag"), len(body))
		}
		// The upstream's Content-Length (of its JSON) would be wrong, and the
		// length of the problem a GET gets is unknown: none is sent.
		if cl := res.Header.Get("Content-Length"); cl != "" {
			t.Fatalf("HEAD: Content-Length %q", cl)
		}
	})
}

// TestNormalizeStatuses: `normalize 409 412` rewrites 412 too and streams
// a 422 through byte for byte; `normalize off` rewrites nothing;
// problem_base sets the type prefix.
func TestNormalizeStatuses(t *testing.T) {
	up := startRaw(t, "conflict {\n\t\tnormalize 409 412\n\t}")
	body := `{"errors":{"title":["has already been taken"]}}`
	q := url.Values{"ct": {"application/json; charset=utf-8"}, "body": {body}, "etag": {`"v4"`}}

	p := expectProblem(t, do(t, rawClient, "PUT", raw(412, q), `{}`), 412, "upstream-conflict")
	if p["detail"] != "Title has already been taken" {
		t.Fatalf("412 detail %q", p["detail"])
	}
	expectProblem(t, do(t, rawClient, "PUT", raw(409, q), `{}`), 409, "upstream-conflict")

	untouched := func(status int) {
		t.Helper()
		r := do(t, rawClient, "PUT", raw(status, q), `{}`)
		expectStatus(t, r, status, "untouched")
		if string(r.body) != body || r.header.Get("Content-Type") != "application/json; charset=utf-8" ||
			r.header.Get("ETag") != `"v4"` {
			t.Fatalf("%d changed: %q %q %s", status, r.header.Get("Content-Type"), r.header.Get("ETag"), r.body)
		}
		expectContentLength(t, r)
	}
	untouched(422)

	reloadCaddy(t, site("conflict {\n\t\tnormalize off\n\t}", up))
	untouched(409)
	untouched(412)

	reloadCaddy(t, site("conflict {\n\t\tproblem_base https://errors.example.com/p/\n\t}", up))
	p = expectProblem(t, do(t, rawClient, "PUT", raw(409, q), `{}`), 409, "upstream-conflict")
	if p["type"] != "https://errors.example.com/p/upstream-conflict" {
		t.Fatalf("type %q", p["type"])
	}
	untouched(412) // default: 409 only
}

// TestNormalizeInsideEncode: encode, outside the handler, sees the
// problem document like any response. Its default types do not include
// application/problem+json, so by default the document goes out as is;
// matched explicitly, it is compressed, and valid either way.
func TestNormalizeInsideEncode(t *testing.T) {
	up := startLegacy(t, map[string][]map[string]any{})
	long := `{"message":"` + strings.Repeat("The article was changed by someone else. ", 30) + `"}`
	q := url.Values{"ct": {"application/json"}, "body": {long}, "gzip": {"1"}}
	for _, c := range []struct {
		encode, wantEncoding string
	}{
		{"encode gzip", ""},
		{"encode gzip {\n\t\tmatch {\n\t\t\theader Content-Type application/problem+json*\n\t\t}\n\t}", "gzip"},
	} {
		startCaddy(t, "\t"+c.encode+"\n"+site("conflict", up))
		r := do(t, rawClient, "PUT", raw(409, q), `{}`, "Accept-Encoding: gzip")
		if got := r.header.Get("Content-Encoding"); got != c.wantEncoding {
			t.Fatalf("%s: Content-Encoding %q, want %q", c.encode, got, c.wantEncoding)
		}
		p := expectProblem(t, r, 409, "upstream-conflict")
		if d, _ := p["detail"].(string); !strings.HasPrefix(d, "The article was changed") {
			t.Fatalf("detail %q", d)
		}
		if c.wantEncoding == "" {
			expectContentLength(t, r)
		}
	}
}

// TestNormalizeAcceptEncoding: a write asks the upstream only for codings
// the rewrite can decode; a read passes the client's list unchanged.
func TestNormalizeAcceptEncoding(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method] = r.Header.Get("Accept-Encoding")
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	up := strings.TrimPrefix(srv.URL, "http://")
	browser := "Accept-Encoding: gzip, deflate, br, zstd"

	startCaddy(t, site("conflict", up))
	do(t, rawClient, "PUT", "/a", `{}`, browser)
	do(t, rawClient, "GET", "/a", nil, browser)
	mu.Lock()
	put, get := seen["PUT"], seen["GET"]
	mu.Unlock()
	if put != "gzip, deflate, zstd" || get != "gzip, deflate, br, zstd" {
		t.Fatalf("upstream saw PUT %q, GET %q", put, get)
	}

	reloadCaddy(t, site("conflict {\n\t\tnormalize off\n\t}", up))
	do(t, rawClient, "PUT", "/a", `{}`, browser)
	mu.Lock()
	put = seen["PUT"]
	mu.Unlock()
	if put != "gzip, deflate, br, zstd" {
		t.Fatalf("normalize off: upstream saw PUT %q", put)
	}
}

// guardedDoc is an upstream that checks If-Match itself (as CouchDB or
// Kubernetes do) and answers a mismatch with 409, with or without the
// current ETag.
type guardedDoc struct {
	mu       sync.Mutex
	version  int
	writes   int
	etagOn09 bool
}

func (g *guardedDoc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cur := fmt.Sprintf(`"v%d"`, g.version)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		w.Header().Set("ETag", cur)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"version":%d}`, g.version)
	case http.MethodPut:
		if r.Header.Get("If-Match") != cur {
			if g.etagOn09 {
				w.Header().Set("ETag", cur)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"message":"Version mismatch."}`)
			return
		}
		g.version++
		g.writes++
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, g.version))
		w.WriteHeader(http.StatusNoContent)
	}
}

// bump changes the document behind the proxy's back.
func (g *guardedDoc) bump() {
	g.mu.Lock()
	g.version++
	g.mu.Unlock()
}

// TestUpstreamConflictUpdatesVersion: an upstream 409 on a write tells the
// proxy that the version it held is not current (README: current := the
// response's version, else unknown), so the next decision does not repeat
// the stale answer: the version the 409 reported is let through, and the
// one that failed is stopped before the upstream.
func TestUpstreamConflictUpdatesVersion(t *testing.T) {
	for _, withETag := range []bool{true, false} {
		t.Run(fmt.Sprintf("ETag on 409=%v", withETag), func(t *testing.T) {
			g := &guardedDoc{version: 1, etagOn09: withETag}
			srv := httptest.NewServer(g)
			defer srv.Close()
			startCaddy(t, site("conflict", strings.TrimPrefix(srv.URL, "http://")))

			v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
			g.bump() // someone writes to the upstream directly: v2
			r := do(t, nil, "PUT", "/doc", `{"a":1}`, "If-Match: "+v1)
			p := expectProblem(t, r, 409, "upstream-conflict")
			if p["detail"] != "Version mismatch." {
				t.Fatalf("detail %q", p["detail"])
			}
			if withETag && r.header.Get("ETag") != `"v2"` {
				t.Fatalf("the upstream's ETag was not kept: %q", r.header.Get("ETag"))
			}

			// The stale v1 is now known stale: rejected here, never sent on.
			writes := g.writes
			p = expectProblem(t, do(t, nil, "PUT", "/doc", `{"a":1}`, "If-Match: "+v1), 409, "stale-version")
			if withETag && p["current_version"] != `"v2"` {
				t.Fatalf("current_version %v, want \"v2\" from the upstream's 409", p["current_version"])
			}
			// The version the upstream reported is let through, not refused
			// as "stale" against the proxy's old v1.
			expectStatus(t, do(t, nil, "PUT", "/doc", `{"a":2}`, `If-Match: "v2"`), 204, "write based on v2")
			if g.writes != writes+1 {
				t.Fatalf("upstream applied %d writes, want 1", g.writes-writes)
			}
		})
	}
}

// sseUpstream sends one event, flushes, and ends only when released.
func sseUpstream(t *testing.T) (host string, release func()) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-done:
		case <-r.Context().Done():
		}
		io.WriteString(w, "data: 2\n\n")
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(done) }) }
	t.Cleanup(func() { release(); srv.Close() })
	return strings.TrimPrefix(srv.URL, "http://"), release
}

// TestNormalizeStreaming: whatever normalize says, a 200 event stream
// (to a GET, or to a POST whose Accept-Encoding is narrowed) reaches the
// client event by event, before the upstream ends.
func TestNormalizeStreaming(t *testing.T) {
	up, release := sseUpstream(t)
	defer release()
	first := true
	for _, block := range []string{
		"conflict",
		"conflict {\n\t\tnormalize 409 412 428\n\t}",
		"conflict {\n\t\tnormalize off\n\t}",
		"conflict {\n\t\tmax_body 1KiB\n\t\tmethods PUT PATCH DELETE POST\n\t}",
	} {
		if first {
			startCaddy(t, site(block, up))
			first = false
		} else {
			reloadCaddy(t, site(block, up))
		}
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			// The request runs in the goroutine: a buffered stream holds back
			// the headers too, and the wait must stay bounded then.
			got := make(chan string, 1)
			go func() {
				req, _ := http.NewRequest(method, base+"/events", strings.NewReader("{}"))
				req.Header.Set("Accept-Encoding", "gzip, br")
				res, err := rawClient.Do(req)
				if err != nil {
					got <- err.Error()
					return
				}
				defer res.Body.Close()
				buf := make([]byte, 64)
				n, _ := res.Body.Read(buf)
				got <- string(buf[:n])
			}()
			select {
			case s := <-got:
				if !strings.Contains(s, "data: 1") {
					t.Fatalf("%q, %s: first read %q", block, method, s)
				}
			case <-time.After(5 * time.Second):
				release() // let the upstream end, so that the test ends too
				t.Fatalf("%q, %s: the first event did not arrive before the upstream ended: the stream was buffered", block, method)
			}
		}
	}
}
