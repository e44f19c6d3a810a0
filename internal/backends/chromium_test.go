package backends

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// A page on one origin reads JSON and its ETag from another (CORS), writes back with If-Match, and puts
// what it saw into the DOM, which DumpDOM returns. What Chromium 156 did here:
//   - the cross-origin GET carries Origin; the script sees ETag only because the API exposes it
//     (Access-Control-Expose-Headers), like any non-safelisted response header;
//   - the PUT with If-Match and a JSON body is preflighted: OPTIONS with Access-Control-Request-Method
//     PUT and Access-Control-Request-Headers "content-type,if-match" before the PUT itself;
//   - a 409 answer reaches the script as an ordinary response (fetch rejects only on network and CORS
//     errors), its body readable when the 409 carries Access-Control-Allow-Origin too.
func TestDumpDOMCrossOriginFetch(t *testing.T) {
	RequireChromium(t)
	var (
		mu   sync.Mutex
		seen []string
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fields := []string{r.Method, r.URL.Path}
		for _, name := range []string{"Access-Control-Request-Headers", "If-Match"} {
			if v := r.Header.Get(name); v != "" {
				fields = append(fields, v)
			}
		}
		seen = append(seen, strings.Join(fields, " "))
		mu.Unlock()
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		h.Set("Access-Control-Expose-Headers", "ETag")
		h.Set("Vary", "Origin")
		switch r.Method {
		case http.MethodOptions:
			h.Set("Access-Control-Allow-Methods", "GET, PUT")
			h.Set("Access-Control-Allow-Headers", "Content-Type, If-Match")
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet:
			h.Set("Content-Type", "application/json")
			h.Set("ETag", `"v1"`)
			io.WriteString(w, `{"message":"hello from the API"}`)
		case http.MethodPut:
			h.Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"title":"Stale version","status":409}`)
		}
	}))
	defer api.Close()
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><body><pre id="out">pending</pre><script>
const api = %q, out = document.getElementById("out");
(async () => {
  const r = await fetch(api + "/articles/1");
  const etag = r.headers.get("ETag"), j = await r.json();
  const w = await fetch(api + "/articles/1", {method: "PUT", headers: {"Content-Type": "application/json", "If-Match": etag}, body: "{}"});
  const p = await w.json();
  out.textContent = "GET " + r.status + " " + j.message + " etag=" + etag + "; PUT " + w.status + " " + p.title;
})().catch(e => { out.textContent = "error: " + e; });
</script></body></html>`, api.URL)
	}))
	defer page.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	dom, err := DumpDOM(ctx, page.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("DumpDOM took %v", time.Since(start).Round(time.Millisecond))
	const want = `<pre id="out">GET 200 hello from the API etag="v1"; PUT 409 Stale version</pre>`
	if !strings.Contains(dom, want) {
		t.Errorf("DOM lacks %s:\n%s", want, dom)
	}
	mu.Lock()
	defer mu.Unlock()
	wantSeen := []string{`GET /articles/1`, `OPTIONS /articles/1 content-type,if-match`, `PUT /articles/1 "v1"`}
	if strings.Join(seen, "\n") != strings.Join(wantSeen, "\n") {
		t.Errorf("the API saw:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(wantSeen, "\n"))
	}
}

func TestDumpDOMCancel(t *testing.T) {
	RequireChromium(t)
	// A page that never finishes loading: its response stalls until the test ends.
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer stall.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := DumpDOM(ctx, stall.URL+"/"); err == nil {
		t.Fatal("DumpDOM of a stalled page returned no error")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the cancelled DumpDOM took %v", took)
	}
}
