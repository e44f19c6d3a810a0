package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gatedDocs is a legacy JSON upstream (it ignores preconditions): GET
// /docs/{id} answers the document with ETag "<version>", PUT replaces it
// and bumps the version. While hold is set, a PUT waits for release before
// it applies: a write in flight.
type gatedDocs struct {
	mu       sync.Mutex
	versions map[string]int
	hold     atomic.Bool
	entered  chan struct{} // a held PUT arrived
	release  chan struct{}
	once     sync.Once
	puts     atomic.Int64
}

// open lets the held PUTs through.
func (g *gatedDocs) open() {
	g.hold.Store(false)
	g.once.Do(func() { close(g.release) })
}

func startGatedDocs(t *testing.T) (*gatedDocs, string) {
	t.Helper()
	g := &gatedDocs{versions: map[string]int{}, entered: make(chan struct{}, 8), release: make(chan struct{})}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(g.open) // runs first: a failed test leaves no PUT held
	return g, strings.TrimPrefix(srv.URL, "http://")
}

func (g *gatedDocs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/docs/")
	switch r.Method {
	case http.MethodGet:
		g.mu.Lock()
		v := max(g.versions[id], 1)
		g.mu.Unlock()
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, v))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q,"title":"t%d","body":"b"}`, id, v)
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		g.puts.Add(1)
		if g.hold.Load() {
			select {
			case g.entered <- struct{}{}:
			default:
			}
			<-g.release
		}
		g.mu.Lock()
		v := max(g.versions[id], 1) + 1
		g.versions[id] = v
		g.mu.Unlock()
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, v))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// TestReloadKeepsTableAndHistory: a reload that changes ttl, cache_size and
// history's count and size keeps the version table and the history (README
// "Operating it"): a write based on the version a write through the old
// config superseded is refused, and the problem still carries what the
// history held (changed_paths, current).
func TestReloadKeepsTableAndHistory(t *testing.T) {
	_, up := startGatedDocs(t)
	startCaddy(t, site("conflict {\n\t\tttl 10m\n\t\tcache_size 8MiB\n\t\thistory 8 1MiB\n\t\tinclude_current\n\t}", up))
	client := counterClient(false)

	g := do(t, client, http.MethodGet, "/docs/1", nil)
	expectStatus(t, g, 200, "GET v1")
	v1 := g.header.Get("ETag")
	w := do(t, client, http.MethodPut, "/docs/1", `{"id":"1","title":"new","body":"b"}`,
		"If-Match: "+v1, "Content-Type: application/json")
	expectStatus(t, w, 200, "PUT v2")

	reloadCaddy(t, site("conflict {\n\t\tttl 20m\n\t\tcache_size 16MiB\n\t\thistory 4 2MiB\n\t\tinclude_current\n\t}", up))
	r := do(t, client, http.MethodPut, "/docs/1", `{"id":"1","title":"t1","body":"mine"}`,
		"If-Match: "+v1, "Content-Type: application/json")
	p := expectProblem(t, r, http.StatusConflict, "stale-version")
	if _, ok := p["current"]; !ok {
		t.Errorf("the history did not survive the reload: no current in %s", r.body)
	}
	if _, ok := p["changed_paths"]; !ok {
		t.Errorf("the history did not survive the reload: no changed_paths in %s", r.body)
	}

	// And back to smaller sizes: still the same table.
	reloadCaddy(t, site("conflict {\n\t\tttl 5m\n\t\tcache_size 4MiB\n\t}", up))
	r = do(t, client, http.MethodPut, "/docs/1", `{"id":"1"}`, "If-Match: "+v1, "Content-Type: application/json")
	expectProblem(t, r, http.StatusConflict, "stale-version")
}

// TestReloadWriteInFlight: a write that holds its key across a reload that
// changes ttl and cache_size still serializes against a write through the
// new config (one lock table): the new write waits for the old one, then
// is refused as based on the version the old one superseded.
func TestReloadWriteInFlight(t *testing.T) {
	docs, up := startGatedDocs(t)
	startCaddy(t, site("conflict {\n\t\tttl 10m\n\t\tcache_size 8MiB\n\t\tlock_timeout 20s\n\t}", up))
	client := counterClient(false)

	g := do(t, client, http.MethodGet, "/docs/2", nil)
	expectStatus(t, g, 200, "GET v1")
	v1 := g.header.Get("ETag")

	docs.hold.Store(true)
	first := make(chan response, 1)
	go func() {
		first <- do(t, client, http.MethodPut, "/docs/2", `{"id":"2","who":"first"}`, "If-Match: "+v1)
	}()
	select {
	case <-docs.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first write did not reach the upstream")
	}

	reloadCaddy(t, site("conflict {\n\t\tttl 20m\n\t\tcache_size 16MiB\n\t\tlock_timeout 20s\n\t}", up))
	second := make(chan response, 1)
	go func() {
		second <- do(t, client, http.MethodPut, "/docs/2", `{"id":"2","who":"second"}`, "If-Match: "+v1)
	}()
	// The second write waits for the key's lock, which the first holds.
	select {
	case r := <-second:
		t.Fatalf("the write through the new config did not wait for the one in flight: %d %s", r.status, r.body)
	case <-time.After(500 * time.Millisecond):
	}
	if n := docs.puts.Load(); n != 1 {
		t.Fatalf("%d PUTs reached the upstream while the first was in flight, want 1", n)
	}
	docs.open()
	expectStatus(t, <-first, 200, "the write in flight across the reload")
	expectProblem(t, <-second, http.StatusConflict, "stale-version")
	if n := docs.puts.Load(); n != 1 {
		t.Errorf("%d PUTs reached the upstream, want 1 (the second was based on a superseded version)", n)
	}
}
