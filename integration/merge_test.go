package integration

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// mergeSite fronts upstream with the merge help on.
func mergeSite(upstream, extra string) string {
	return site("conflict {\n\t\thistory 32 4MiB\n\t\tinclude_current\n\t\tmerge auto\n"+extra+"\t}",
		strings.TrimPrefix(upstream, "http://"))
}

func articleDB() []byte {
	return []byte(`{"articles":[{"id":1,"title":"Hello","body":"First draft","tags":["news"]}]}`)
}

// TestMergeTwoEditorsJSONServer is the README's example against the real
// json-server: two editors read the same version; one changes the title,
// one the body: both succeed and json-server holds both edits. A third
// editor who also changed the title from that version gets a 409 that
// names /title and shows the other editor's title.
func TestMergeTwoEditorsJSONServer(t *testing.T) {
	up := backends.StartJSONServer(t, articleDB())
	startCaddy(t, mergeSite(up, ""))
	client := counterClient(false)

	g := do(t, client, "GET", "/articles/1", nil)
	expectStatus(t, g, 200, "GET")
	v1 := g.header.Get("ETag")

	a := do(t, client, "PUT", "/articles/1",
		`{"id":1,"title":"Hello, world","body":"First draft","tags":["news"]}`, "If-Match: "+v1)
	expectStatus(t, a, 200, "editor A (title)")
	v2 := a.header.Get("ETag")

	b := do(t, client, "PUT", "/articles/1",
		`{"id":1,"title":"Hello","body":"Second draft","tags":["news"]}`, "If-Match: "+v1)
	expectStatus(t, b, 200, "editor B (body), stale but disjoint")
	if got, want := b.header.Get("Conflict-Merged"), v1+" -> "+v2; got != want {
		t.Errorf("Conflict-Merged = %q, want %q", got, want)
	}
	final := directGet(t, up+"/articles/1")
	if final["title"] != "Hello, world" || final["body"] != "Second draft" {
		t.Fatalf("json-server holds %v: an edit was lost", final)
	}

	c := do(t, client, "PUT", "/articles/1",
		`{"id":1,"title":"Goodbye","body":"First draft","tags":["news"]}`, "If-Match: "+v1)
	p := expectProblem(t, c, 409, "stale-version")
	if !reflect.DeepEqual(p["conflicting_paths"], []any{"/title"}) {
		t.Errorf("conflicting_paths = %v", p["conflicting_paths"])
	}
	changes, _ := p["changes"].(map[string]any)
	if changes["title"] != "Hello, world" || changes["body"] != "Second draft" {
		t.Errorf("changes = %v", p["changes"])
	}
	if cur, _ := p["current"].(map[string]any); cur["title"] != "Hello, world" {
		t.Errorf("current = %v", p["current"])
	}
	if final := directGet(t, up+"/articles/1"); final["title"] != "Hello, world" {
		t.Errorf("the rejected write reached json-server: %v", final)
	}
	t.Logf("409 body: %s", c.body)
}

// TestMergeConcurrentJSONServer: 16 clients read the same version, then
// each sets its own field at once. The proxy serializes them and rebases
// every stale one onto the state before it: all succeed, every field is
// set, nothing else changed.
func TestMergeConcurrentJSONServer(t *testing.T) {
	const clients = 16
	up := backends.StartJSONServer(t, articleDB())
	startCaddy(t, mergeSite(up, ""))
	client := counterClient(false)
	g := do(t, client, "GET", "/articles/1", nil)
	v1 := g.header.Get("ETag")
	base := g.json(t)

	var wg sync.WaitGroup
	var mu sync.Mutex
	merged, statuses := 0, map[int]int{}
	start := make(chan struct{})
	for i := range clients {
		doc := map[string]any{}
		for k, v := range base {
			doc[k] = v
		}
		doc[fmt.Sprintf("f%02d", i)] = i
		wg.Go(func() {
			<-start
			r := do(t, client, "PUT", "/articles/1", doc, "If-Match: "+v1)
			mu.Lock()
			defer mu.Unlock()
			statuses[r.status]++
			if r.header.Get("Conflict-Merged") != "" {
				merged++
			}
			if r.status != 200 {
				t.Errorf("client %d: %d %s", i, r.status, r.body)
			}
		})
	}
	close(start)
	wg.Wait()
	final := directGet(t, up+"/articles/1")
	for i := range clients {
		if final[fmt.Sprintf("f%02d", i)] != float64(i) {
			t.Errorf("field f%02d lost: %v", i, final)
		}
	}
	if final["title"] != "Hello" || final["body"] != "First draft" || len(final) != 4+clients {
		t.Errorf("json-server holds %v", final)
	}
	if merged != clients-1 {
		t.Errorf("%d writes merged, want %d", merged, clients-1)
	}
	t.Logf("statuses %v, %d merged", statuses, merged)
}

// patch sends a merge patch through Caddy.
func patch(t *testing.T, path, body, ifMatch string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPatch, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("If-Match", ifMatch)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// TestMergePatchLegacy: stale RFC 7396 merge patches against the legacy
// API (json-server 0.17.4 ignores a merge-patch+json body): disjoint ones
// are forwarded with If-Match moved to the current version, an overlapping
// one is rejected naming the field. The history survives a reload.
func TestMergePatchLegacy(t *testing.T) {
	up := startLegacy(t, map[string][]map[string]any{"articles": {{"id": 1, "title": "Hello", "body": "x", "draft": true}}})
	startCaddy(t, mergeSite(up, ""))
	v1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	reloadCaddy(t, mergeSite(up, "\t\tlock_timeout 9s\n"))

	r := patch(t, "/articles/1", `{"title":"Hello, world"}`, v1)
	expectStatus(t, r, 200, "first patch")
	v2 := r.header.Get("ETag")
	r = patch(t, "/articles/1", `{"body":"y","draft":null}`, v1)
	expectStatus(t, r, 200, "stale disjoint patch")
	if r.header.Get("Conflict-Merged") != v1+" -> "+v2 {
		t.Errorf("Conflict-Merged = %q", r.header.Get("Conflict-Merged"))
	}
	doc := r.json(t)
	if doc["title"] != "Hello, world" || doc["body"] != "y" || doc["draft"] != nil {
		t.Errorf("upstream answered %v", doc)
	}
	r = patch(t, "/articles/1", `{"title":"Mine"}`, v1)
	p := expectProblem(t, r, 409, "stale-version")
	if !reflect.DeepEqual(p["conflicting_paths"], []any{"/title"}) {
		t.Errorf("problem %s", r.body)
	}
}
