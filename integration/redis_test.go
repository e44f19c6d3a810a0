package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

// Scaling out: several Caddy nodes share one version table in Redis. caddytest
// runs one Caddy in process, so every node here is a separate process of
// the binary built from ./cmd/caddy, on its own free ports (these tests do
// not use caddytest's fixed ones).

var caddyBin struct {
	once sync.Once
	path string
	err  error
}

// caddyBinary builds ./cmd/caddy once per test run, into TestMain's
// temporary directory (removed when the run ends).
func caddyBinary(t *testing.T) string {
	t.Helper()
	caddyBin.once.Do(func() {
		dir := filepath.Join(os.Getenv("XDG_DATA_HOME"), "bin")
		caddyBin.path = filepath.Join(dir, "caddy")
		goBin, err := exec.LookPath("go")
		if err != nil {
			caddyBin.err = err
			return
		}
		cmd := exec.Command(goBin, "build", "-o", caddyBin.path, "./cmd/caddy")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			caddyBin.err = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if caddyBin.err != nil {
		t.Fatal(caddyBin.err)
	}
	return caddyBin.path
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lbHost is the Host header the clients send every node, as a load
// balancer in front of them passes it on: one origin, one key space.
const lbHost = "Host: api.test"

// node is one Caddy process.
type node struct {
	url  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startNode runs a Caddy process serving site (its directives) on a free
// port, and stops it when the test ends.
func startNode(t *testing.T, site string) *node {
	t.Helper()
	bin := caddyBinary(t)
	port, admin := freePort(t), freePort(t)
	conf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	skip_install_trust
	grace_period 1ns
	log {
		level WARN
	}
}
http://:%d {
	bind 127.0.0.1
%s
}
`, admin, port, site)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &node{url: "http://127.0.0.1:" + strconv.Itoa(port), out: &lockedBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node %s output:\n%s", n.url, n.out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config/", admin))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				if c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://")); err == nil {
					c.Close()
					return n
				}
			}
		}
		select {
		case <-n.done:
			t.Fatalf("caddy exited: %s", n.out)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy not ready after 30s: %s", n.out)
		}
	}
}

// kill ends the node at once (SIGKILL: no cleanup, like a crashed machine).
func (n *node) kill() {
	_ = n.cmd.Process.Kill()
	<-n.done
}

func redisSite(conflictOptions, redisOptions, upstream string) string {
	return site("conflict {\n"+conflictOptions+"\n\t\tstore redis {\n"+redisOptions+"\n\t\t}\n\t}", upstream)
}

// runCounterOn lets clients×perClient increments race, the clients split
// across the nodes, and returns the final counter value.
func runCounterOn(t *testing.T, nodes []*node, clients, perClient int) (final, conflicts int) {
	client := counterClient(false)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range clients {
		n := nodes[i%len(nodes)]
		wg.Go(func() {
			c := incrementAt(t, client, n.url, perClient, false)
			mu.Lock()
			conflicts += c
			mu.Unlock()
		})
	}
	wg.Wait()
	g := do(t, client, http.MethodGet, nodes[0].url+"/counters/1", nil, lbHost)
	var doc struct{ Value int }
	if err := json.Unmarshal(g.body, &doc); err != nil {
		t.Fatalf("final GET: %v %s", err, g.body)
	}
	return doc.Value, conflicts
}

// TestRedisTwoNodesNoLostUpdate: 32 clients on two nodes sharing Redis in
// front of one legacy upstream (it ignores preconditions): no increment is
// lost.
func TestRedisTwoNodesNoLostUpdate(t *testing.T) {
	rds := backends.StartRedis(t)
	up := startLegacy(t, counterSeed())
	s := redisSite("", "\t\t\taddress "+rds.Addr(), up)
	nodes := []*node{startNode(t, s), startNode(t, s)}
	start := time.Now()
	final, conflicts := runCounterOn(t, nodes, lostClients, lostPerClient)
	if final != lostClients*lostPerClient {
		t.Fatalf("counter = %d, want %d: updates were lost across nodes", final, lostClients*lostPerClient)
	}
	t.Logf("two nodes, one Redis: %d increments in %s, %d conflicts answered with 409", final,
		time.Since(start).Round(time.Millisecond), conflicts)
}

// TestMemoryTwoNodesLoseUpdates proves the experiment can fail: two nodes
// with their own in-process tables let writers on different nodes both
// through.
func TestMemoryTwoNodesLoseUpdates(t *testing.T) {
	up := startLegacy(t, counterSeed())
	s := site("conflict", up)
	nodes := []*node{startNode(t, s), startNode(t, s)}
	final, _ := runCounterOn(t, nodes, lostClients, lostPerClient)
	if final >= lostClients*lostPerClient {
		t.Fatalf("two memory-store nodes reached %d: the test cannot tell a lost update", final)
	}
	t.Logf("two nodes without a shared table: %d of %d increments survived", final, lostClients*lostPerClient)
}

// TestRedisNodeKilledMidWrite: a node dies (SIGKILL) while its write is at
// the upstream, and the write then lands. Its claim expires after the
// lease; the other node then takes the key, and since the dead node's write
// may have happened, re-reads the version before deciding: the client that
// still holds the old version is rejected, the one with the new one passes.
func TestRedisNodeKilledMidWrite(t *testing.T) {
	rds := backends.StartRedis(t)
	d := &docServer{hold: make(chan struct{})}
	up := startDocServer(t, d)
	d.put("/doc", `{"n":0}`)
	s := redisSite("\t\tlock_timeout 5s", "\t\t\taddress "+rds.Addr()+"\n\t\t\tlease 1s", up)
	a, b := startNode(t, s), startNode(t, s)

	v1 := do(t, nil, http.MethodGet, b.url+"/doc", nil, lbHost).header.Get("ETag")
	go func() {
		// Node a dies under this request: its client sees an error.
		req, _ := http.NewRequest(http.MethodPut, a.url+"/doc", strings.NewReader(`{"n":1}`))
		req.Host = "api.test"
		req.Header.Set("If-Match", v1)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for d.arrived.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("node a's write never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A client that read v1 writes through node b: it waits behind node
	// a's claim, which outlives its 1s lease because node a renews it.
	stale := make(chan response, 1)
	go func() { stale <- do(t, nil, http.MethodPut, b.url+"/doc", `{"n":2}`, "If-Match: "+v1, lbHost) }()
	time.Sleep(1500 * time.Millisecond)
	select {
	case r := <-stale:
		t.Fatalf("node b decided while node a's write was in flight: %d %s", r.status, r.body)
	default:
	}
	a.kill()
	killed := time.Now()
	close(d.hold) // the dead node's write lands after all
	r := <-stale
	if waited := time.Since(killed); waited > 3*time.Second {
		t.Errorf("the key was free only %s after the kill (lease 1s)", waited)
	}
	// Node b took the expired claim over, found the key uncertain and
	// re-read it: v1 is stale now.
	p := expectProblem(t, r, http.StatusConflict, "stale-version")
	if p["current_version"] != `"v2"` {
		t.Errorf("current_version = %v, want the dead node's write \"v2\" (re-read)", p["current_version"])
	}
	if d.writes.Load() != 1 {
		t.Errorf("%d writes reached the upstream, want only the dead node's", d.writes.Load())
	}
	expectStatus(t, do(t, nil, http.MethodPut, b.url+"/doc", `{"n":3}`, `If-Match: "v2"`, lbHost), 204, "write with the re-read version")
	if got := do(t, nil, http.MethodGet, b.url+"/doc", nil, lbHost); string(got.body) != `{"n":3}` {
		t.Fatalf("document = %s", got.body)
	}
}

// TestRedisDown: Redis dies during a run. A node with on_store_error
// reject answers writes with 503 store-unavailable (Retry-After), one with
// forward lets them through; reads pass on both. When Redis is back (empty:
// no persistence), both recover without a restart and share the table
// again.
func TestRedisDown(t *testing.T) {
	rds := backends.StartRedis(t)
	d := &docServer{}
	up := startDocServer(t, d)
	d.put("/doc", `{"n":0}`)
	redis := "\t\t\taddress " + rds.Addr() + "\n\t\t\ttimeout 500ms"
	rej := startNode(t, redisSite("", redis+"\n\t\t\ton_store_error reject", up))
	fwd := startNode(t, redisSite("", redis+"\n\t\t\ton_store_error forward", up))

	etag := do(t, nil, http.MethodGet, rej.url+"/doc", nil, lbHost).header.Get("ETag")
	expectStatus(t, do(t, nil, http.MethodPut, rej.url+"/doc", `{"n":1}`, "If-Match: "+etag, lbHost), 204, "write with Redis up")
	expectProblem(t, do(t, nil, http.MethodPut, fwd.url+"/doc", `{"n":9}`, "If-Match: "+etag, lbHost), 409, "stale-version")

	rds.Stop()
	for range 3 {
		r := do(t, nil, http.MethodPut, rej.url+"/doc", `{"n":2}`, `If-Match: "v2"`, lbHost)
		expectProblem(t, r, http.StatusServiceUnavailable, "store-unavailable")
		if ra := r.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		expectStatus(t, do(t, nil, http.MethodGet, rej.url+"/doc", nil, lbHost), 200, "read with Redis down (reject node)")
		expectStatus(t, do(t, nil, http.MethodGet, fwd.url+"/doc", nil, lbHost), 200, "read with Redis down (forward node)")
	}
	writes := d.writes.Load()
	expectStatus(t, do(t, nil, http.MethodPut, fwd.url+"/doc", `{"n":2}`, `If-Match: "v2"`, lbHost), 204, "forwarded unchecked")
	if d.writes.Load() != writes+1 {
		t.Fatal("the forwarded write did not reach the upstream")
	}
	// After a failure a node does not ask Redis again for RedisRetryAfter:
	// until then its writes get on_store_error, even if Redis is back.
	fwdRetries := time.Now().Add(versioncache.RedisRetryAfter + 100*time.Millisecond)

	rds.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		// The reject node needs no restart: its writes are checked again.
		r := do(t, nil, http.MethodPut, rej.url+"/doc", `{"n":4}`, `If-Match: "v3"`, lbHost)
		if r.status == http.StatusNoContent {
			break
		}
		expectProblem(t, r, http.StatusServiceUnavailable, "store-unavailable")
		if time.Now().After(deadline) {
			t.Fatal("the reject node did not recover after Redis came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The table is shared again: node fwd rejects a write based on v3.
	time.Sleep(time.Until(fwdRetries))
	expectProblem(t, do(t, nil, http.MethodPut, fwd.url+"/doc", `{"n":5}`, `If-Match: "v3"`, lbHost), 409, "stale-version")
	expectStatus(t, do(t, nil, http.MethodPut, fwd.url+"/doc", `{"n":5}`, `If-Match: "v4"`, lbHost), 204, "write with the current version")
}
