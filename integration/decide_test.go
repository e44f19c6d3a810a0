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

// docServer is a programmable legacy upstream with one resource per path:
// it ignores preconditions, numbers its versions "v1", "v2", ... and can be
// told to leave the ETag out of write responses (like nginx), to hold
// writes until released, or to apply a write and then fail with 502.
type docServer struct {
	mu       sync.Mutex
	docs     map[string]string
	versions map[string]int
	writes   atomic.Int64
	arrived  atomic.Int64 // writes that reached the upstream, held or not

	noWriteETag bool
	hold        chan struct{} // when set, writes wait for it
	failAfter   atomic.Bool   // apply the write, then answer 502
}

func startDocServer(t *testing.T, d *docServer) string {
	d.docs = map[string]string{}
	d.versions = map[string]int{}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func (d *docServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		d.mu.Lock()
		doc, ok := d.docs[p]
		v := d.versions[p]
		d.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, v))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, doc)
	case http.MethodPut, http.MethodPatch:
		body, _ := io.ReadAll(r.Body)
		d.arrived.Add(1)
		if d.hold != nil {
			<-d.hold
		}
		d.mu.Lock()
		d.docs[p] = string(body)
		d.versions[p]++
		v := d.versions[p]
		d.mu.Unlock()
		d.writes.Add(1)
		if d.failAfter.Load() {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		if !d.noWriteETag {
			w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, v))
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		d.mu.Lock()
		_, ok := d.docs[p]
		delete(d.docs, p)
		d.versions[p]++
		d.mu.Unlock()
		d.writes.Add(1)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (d *docServer) put(p, doc string) {
	d.mu.Lock()
	d.docs[p] = doc
	d.versions[p]++
	d.mu.Unlock()
}

func TestStaleVersionRejected(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{"a":1}`)
	startCaddy(t, site("conflict", up))

	g := do(t, nil, "GET", "/doc", nil)
	expectStatus(t, g, 200, "GET")
	v1 := g.header.Get("ETag")
	expectStatus(t, do(t, nil, "PUT", "/doc", `{"a":2}`, "If-Match: "+v1), 204, "first write")
	writes := d.writes.Load()

	r := do(t, nil, "PUT", "/doc", `{"a":3}`, "If-Match: "+v1)
	p := expectProblem(t, r, 409, "stale-version")
	if p["current_version"] != `"v2"` || r.header.Get("ETag") != `"v2"` {
		t.Errorf("current version: member %v, header %q; want \"v2\"", p["current_version"], r.header.Get("ETag"))
	}
	if pv, _ := p["provided_versions"].([]any); len(pv) != 1 || pv[0] != v1 {
		t.Errorf("provided_versions = %v, want [%s]", p["provided_versions"], v1)
	}
	if p["resource"] != "/doc" {
		t.Errorf("resource = %v", p["resource"])
	}
	if d.writes.Load() != writes {
		t.Fatal("the stale write reached the upstream")
	}
	if got := do(t, nil, "GET", "/doc", nil); string(got.body) != `{"a":2}` {
		t.Fatalf("upstream document = %s, want the first write's", got.body)
	}
	// The current version is accepted, with or without encode's suffix.
	expectStatus(t, do(t, nil, "PUT", "/doc", `{"a":4}`, `If-Match: "x", "v2-gzip"`), 204, "write with current version")
}

func TestDecisionTable(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	startCaddy(t, site("conflict", up))

	t.Run("unknown state forwards any claim", func(t *testing.T) {
		d.put("/unknown", `{}`)
		expectStatus(t, do(t, nil, "PUT", "/unknown", `{}`, `If-Match: "never-seen"`), 204, "unknown")
	})
	t.Run("If-None-Match * on an existing resource", func(t *testing.T) {
		d.put("/exists", `{}`)
		do(t, nil, "GET", "/exists", nil)
		r := do(t, nil, "PUT", "/exists", `{}`, "If-None-Match: *")
		p := expectProblem(t, r, 412, "already-exists")
		if p["current_version"] != `"v1"` {
			t.Errorf("current_version = %v", p["current_version"])
		}
	})
	t.Run("If-Match * forwards on a known resource", func(t *testing.T) {
		expectStatus(t, do(t, nil, "PUT", "/exists", `{}`, "If-Match: *"), 204, "If-Match *")
	})
	t.Run("tombstone", func(t *testing.T) {
		d.put("/gone", `{}`)
		v := do(t, nil, "GET", "/gone", nil).header.Get("ETag")
		expectStatus(t, do(t, nil, "DELETE", "/gone", nil, "If-Match: "+v), 204, "DELETE")
		expectProblem(t, do(t, nil, "PUT", "/gone", `{}`, "If-Match: "+v), 409, "deleted")
		expectProblem(t, do(t, nil, "PUT", "/gone", `{}`, "If-Match: *"), 409, "deleted")
		// Creating it again is fine.
		expectStatus(t, do(t, nil, "PUT", "/gone", `{}`, "If-None-Match: *"), 204, "re-create")
	})
	t.Run("GET 404 makes a tombstone", func(t *testing.T) {
		expectStatus(t, do(t, nil, "GET", "/never", nil), 404, "GET")
		expectProblem(t, do(t, nil, "PATCH", "/never", `{}`, "If-Match: *"), 409, "deleted")
	})
	t.Run("invalid If-Match", func(t *testing.T) {
		p := expectProblem(t, do(t, nil, "PUT", "/exists", `{}`, `If-Match: "unterminated`), 400, "invalid-precondition")
		if !strings.Contains(p["detail"].(string), "If-Match") {
			t.Errorf("detail does not name the header: %v", p["detail"])
		}
	})
	t.Run("no claim forwards", func(t *testing.T) {
		expectStatus(t, do(t, nil, "PUT", "/exists", `{}`), 204, "no claim")
	})
	t.Run("reads and other methods pass", func(t *testing.T) {
		expectStatus(t, do(t, nil, "OPTIONS", "/exists", nil), 405, "OPTIONS")
		expectStatus(t, do(t, nil, "HEAD", "/exists", nil), 200, "HEAD")
	})
}

// TestOnlySupersededKnown: an upstream that answers writes without an ETag
// (nginx does) leaves the current version unknown, but the version the
// write replaced is known to be stale.
func TestOnlySupersededKnown(t *testing.T) {
	d := &docServer{noWriteETag: true}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict", up))
	v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	expectStatus(t, do(t, nil, "PUT", "/doc", `{"n":1}`, "If-Match: "+v1), 204, "first write")
	expectProblem(t, do(t, nil, "PUT", "/doc", `{"n":2}`, "If-Match: "+v1), 409, "stale-version")
	// A tag the proxy has not seen superseded may be the new one: forward.
	expectStatus(t, do(t, nil, "PUT", "/doc", `{"n":3}`, `If-Match: "v2"`), 204, "unknown current")
}

func TestRequirePrecondition(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict {\n\t\trequire precondition\n\t}", up))
	p := expectProblem(t, do(t, nil, "PUT", "/doc", `{}`), 428, "precondition-required")
	if !strings.Contains(p["detail"].(string), "If-Match") {
		t.Errorf("detail should say which header to send: %v", p["detail"])
	}
	if d.writes.Load() != 0 {
		t.Fatal("the write reached the upstream")
	}
	expectStatus(t, do(t, nil, "PUT", "/doc", `{}`, "If-Match: *"), 204, "with a precondition")
	expectStatus(t, do(t, nil, "GET", "/doc", nil), 200, "reads need nothing")
}

func TestStaleStatus412(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict {\n\t\tstale_status 412\n\t}", up))
	v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1)
	expectProblem(t, do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1), 412, "stale-version")
}

func TestReportMode(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict {\n\t\tmode report\n\t}", up))
	v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1)
	r := do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1)
	expectStatus(t, r, 204, "report mode forwards")
	if got := r.header.Get("Conflict-Report"); got != "stale-version" {
		t.Errorf("Conflict-Report = %q, want stale-version", got)
	}
	if d.writes.Load() != 2 {
		t.Errorf("upstream writes = %d, want 2", d.writes.Load())
	}
}

func TestWriteInProgress(t *testing.T) {
	d := &docServer{hold: make(chan struct{})}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict {\n\t\tlock_timeout 200ms\n\t}", up))
	first := make(chan response, 1)
	go func() { first <- do(t, nil, "PUT", "/doc", `{"first":true}`) }()
	defer func() { close(d.hold); expectStatus(t, <-first, 204, "first write") }()
	// Wait until the first write is at the upstream, holding the key.
	deadline := time.Now().Add(5 * time.Second)
	for d.arrived.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first write never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	r := do(t, nil, "PUT", "/doc", `{"second":true}`)
	waited := time.Since(start)
	expectProblem(t, r, 409, "write-in-progress")
	if r.header.Get("Retry-After") == "" {
		t.Error("write-in-progress without Retry-After")
	}
	if waited < 200*time.Millisecond {
		t.Errorf("answered after %v, before lock_timeout", waited)
	}
	if d.arrived.Load() != 1 {
		t.Error("the second write reached the upstream")
	}
}

// TestUncertainWriteIsReRead: the upstream applied a write but answered 502;
// the proxy cannot know the new version, so before the next write it asks
// the upstream again, and a stale write is still rejected.
func TestUncertainWriteIsReRead(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict", up))
	v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	d.failAfter.Store(true)
	expectStatus(t, do(t, nil, "PUT", "/doc", `{"n":1}`, "If-Match: "+v1), 502, "failed write")
	d.failAfter.Store(false)
	// Without the re-read the proxy would still believe v1 is current.
	expectProblem(t, do(t, nil, "PUT", "/doc", `{"n":2}`, "If-Match: "+v1), 409, "stale-version")
	if got := do(t, nil, "GET", "/doc", nil); string(got.body) != `{"n":1}` {
		t.Fatalf("document = %s", got.body)
	}
}

// TestUncertainAndUpstreamDown: if the re-read fails too, the write gets a
// 502 upstream-unavailable problem.
func TestUncertainAndUpstreamDown(t *testing.T) {
	d := &docServer{}
	srv := httptest.NewServer(d)
	d.docs, d.versions = map[string]string{}, map[string]int{}
	d.put("/doc", `{}`)
	up := strings.TrimPrefix(srv.URL, "http://")
	startCaddy(t, site("conflict", up))
	v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	d.failAfter.Store(true)
	do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1)
	srv.Close()
	expectProblem(t, do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1), 502, "upstream-unavailable")
}

// TestQueryRepresentationsNotLearned: /doc?embed=x is another
// representation with its own ETag; it must not become /doc's version.
func TestQueryRepresentationsNotLearned(t *testing.T) {
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{}`)
	startCaddy(t, site("conflict", up))
	v1 := do(t, nil, "GET", "/doc", nil).header.Get("ETag")
	// The query response carries "v1" too here, but is not learned: after a
	// write, a GET with a query must not restore v1 as current.
	expectStatus(t, do(t, nil, "PUT", "/doc", `{"n":1}`, "If-Match: "+v1), 204, "write")
	d.mu.Lock()
	d.versions["/doc"] = 1 // the upstream reports v1 again, for the query representation
	d.mu.Unlock()
	do(t, nil, "GET", "/doc?embed=comments", nil)
	expectProblem(t, do(t, nil, "PUT", "/doc", `{}`, "If-Match: "+v1), 409, "stale-version")
}
