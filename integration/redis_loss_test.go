package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// Redis in production (README "When Redis fails"): Redis loses its data or
// is restarted while two nodes serve writes, a node freezes mid-write. The
// runs are judged from the upstream's own record of every write it applied.

// ledger is a legacy upstream (it ignores preconditions) that keeps a record
// of every write it applies: the version it had, and the If-Match the write
// carried. A write applied with an If-Match other than the version the
// upstream had is a lost update that got through the proxy.
type ledger struct {
	mu      sync.Mutex
	value   map[string]int // per path: the counter, which is also its version
	applied []ledgerWrite
	hold    chan struct{} // when set, writes wait for it (after arrival)
	arrived atomic.Int64
	// holdReads, when set, makes reads wait for it (after counting them)
	holdReads chan struct{}
	reads     atomic.Int64
}

type ledgerWrite struct {
	path      string
	had       int    // the version when the write was applied
	claimed   string // its If-Match
	wrote     int
	requestID string
}

func startLedger(t *testing.T) (*ledger, string) {
	l := &ledger{value: map[string]int{}}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	return l, strings.TrimPrefix(srv.URL, "http://")
}

func etagOf(v int) string { return `"v` + strconv.Itoa(v) + `"` }

func (l *ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		l.reads.Add(1)
		if l.holdReads != nil {
			<-l.holdReads
		}
		l.mu.Lock()
		v := l.value[p]
		l.mu.Unlock()
		w.Header().Set("ETag", etagOf(v))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"value":%d}`, v)
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		l.arrived.Add(1)
		if l.hold != nil {
			<-l.hold
		}
		var n int
		if _, err := fmt.Sscanf(string(body), `{"value":%d}`, &n); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		l.mu.Lock()
		l.applied = append(l.applied, ledgerWrite{path: p, had: l.value[p], claimed: r.Header.Get("If-Match"),
			wrote: n, requestID: r.Header.Get("X-Request-Id")})
		l.value[p] = n
		l.mu.Unlock()
		w.Header().Set("ETag", etagOf(n))
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (l *ledger) valueOf(p string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.value[p]
}

// check fails the test for every write applied on a version it was not
// based on, and for every acknowledged write the upstream never applied.
func (l *ledger) check(t *testing.T, acked map[string]bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	seen := map[string]bool{}
	for _, a := range l.applied {
		seen[a.requestID] = true
		if a.claimed != etagOf(a.had) {
			lost++
			if lost <= 5 {
				t.Errorf("lost update: %s applied with If-Match %s while the upstream had %s", a.path, a.claimed, etagOf(a.had))
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d applied writes were based on a version the upstream no longer had", lost, len(l.applied))
	}
	for id := range acked {
		if !seen[id] {
			t.Errorf("write %s was acknowledged but never applied", id)
		}
	}
}

// hammer runs read-modify-write increments of paths through nodes until
// stop is closed (each client retries on 409, 503 and errors); it returns
// the request IDs of the acknowledged writes.
func hammer(t *testing.T, nodes []*node, paths []string, clients int, stop <-chan struct{}) (acked map[string]bool, conflicts, unavailable int) {
	client := counterClient(false)
	acked = map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var seq atomic.Int64
	for i := range clients {
		n, p := nodes[i%len(nodes)], paths[i%len(paths)]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				g, err := send(client, http.MethodGet, n.url+p, "", nil)
				if err != nil || g.StatusCode != http.StatusOK {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				var v int
				fmt.Sscanf(g.body, `{"value":%d}`, &v)
				id := strconv.FormatInt(seq.Add(1), 10)
				res, err := send(client, http.MethodPut, n.url+p, fmt.Sprintf(`{"value":%d}`, v+1),
					map[string]string{"If-Match": g.Header.Get("ETag"), "X-Request-Id": id})
				mu.Lock()
				switch {
				case err != nil:
				case res.StatusCode == http.StatusNoContent:
					acked[id] = true
				case res.StatusCode == http.StatusConflict:
					conflicts++
				case res.StatusCode == http.StatusServiceUnavailable:
					unavailable++
					time.Sleep(50 * time.Millisecond) // Retry-After says 1s; a busy client retries sooner
				default:
					t.Errorf("PUT: %d %s", res.StatusCode, res.body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return acked, conflicts, unavailable
}

type sent struct {
	*http.Response
	body string
}

func send(client *http.Client, method, url, body string, headers map[string]string) (sent, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return sent{}, err
	}
	req.Host = "api.test"
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		return sent{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return sent{res, string(b)}, nil
}

// TestRedisDataLossNoLostUpdate: two nodes share Redis in front of a
// legacy upstream; while 16 clients increment two counters, Redis is
// flushed twice (FLUSHALL) and restarted once without persistence. Keys
// written before each loss are re-read before their next write, so the
// upstream's record shows no write applied on a version it did not have,
// and every acknowledged write was applied.
func TestRedisDataLossNoLostUpdate(t *testing.T) {
	rds := backends.StartRedis(t)
	l, up := startLedger(t)
	s := redisSite("\t\tlock_timeout 5s", "\t\t\taddress "+rds.Addr()+"\n\t\t\ttimeout 500ms", up)
	nodes := []*node{startNode(t, s), startNode(t, s)}
	admin := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer admin.Close()

	stop := make(chan struct{})
	done := make(chan struct{})
	var acked map[string]bool
	var conflicts, unavailable int
	go func() {
		acked, conflicts, unavailable = hammer(t, nodes, []string{"/counters/1", "/counters/2"}, 16, stop)
		close(done)
	}()
	ctx := context.Background()
	applied := func() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.applied) }
	waitApplied := func(n int) {
		deadline := time.Now().Add(20 * time.Second)
		for applied() < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d writes applied, want %d", applied(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitApplied(100)
	if err := admin.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitApplied(applied() + 100)
	rds.Stop()
	time.Sleep(300 * time.Millisecond)
	rds.Start()
	waitApplied(applied() + 100)
	if err := admin.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitApplied(applied() + 100)
	close(stop)
	<-done
	l.check(t, acked)
	t.Logf("%d writes applied, %d acknowledged, %d 409s, %d 503s while Redis was down", applied(), len(acked), conflicts, unavailable)
}

// TestRedisNodeFrozenMidWrite: node a is frozen (SIGSTOP) while its write
// is at the upstream, for longer than its lease. Node b watches a's claim
// make no progress for a whole lease, takes it over, re-reads the key
// (a's write may have happened) and refuses a stale write; a newer write
// passes. When a wakes, its late answer finds its claim gone: it does not
// overwrite the newer state, and the key is re-read again.
func TestRedisNodeFrozenMidWrite(t *testing.T) {
	rds := backends.StartRedis(t)
	l, up := startLedger(t)
	l.hold = make(chan struct{})
	s := redisSite("\t\tlock_timeout 10s", "\t\t\taddress "+rds.Addr()+"\n\t\t\tlease 1s", up)
	a, b := startNode(t, s), startNode(t, s)
	client := counterClient(false)

	g, err := send(client, http.MethodGet, b.url+"/doc", "", nil)
	if err != nil || g.Header.Get("ETag") != `"v0"` {
		t.Fatalf("GET: %v %v", err, g.Header)
	}
	aDone := make(chan string, 1)
	go func() {
		r, err := send(client, http.MethodPut, a.url+"/doc", `{"value":1}`, map[string]string{"If-Match": `"v0"`, "X-Request-Id": "a"})
		if err != nil {
			aDone <- err.Error()
			return
		}
		aDone <- r.Status
	}()
	deadline := time.Now().Add(5 * time.Second)
	for l.arrived.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("node a's write never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.freeze(t)
	defer a.cmd.Process.Signal(syscall.SIGCONT)
	close(l.hold) // a's write lands while a is frozen
	deadline = time.Now().Add(5 * time.Second)
	for l.valueOf("/doc") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("node a's write was not applied")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	stale, err := send(client, http.MethodPut, b.url+"/doc", `{"value":1}`, map[string]string{"If-Match": `"v0"`, "X-Request-Id": "stale"})
	if err != nil {
		t.Fatal(err)
	}
	if stale.StatusCode != http.StatusConflict || !strings.Contains(stale.body, "stale-version") {
		t.Fatalf("stale write through b while a is frozen: %d %s", stale.StatusCode, stale.body)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("b decided after %s, before a's 1s lease could have run out on its clock", waited)
	}
	fresh, err := send(client, http.MethodPut, b.url+"/doc", `{"value":2}`, map[string]string{"If-Match": `"v1"`, "X-Request-Id": "fresh"})
	if err != nil || fresh.StatusCode != http.StatusNoContent {
		t.Fatalf("write with the current version through b: %v %d %s", err, fresh.StatusCode, fresh.body)
	}
	// Wake a: its answer for v1 arrives after b's write of v2.
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-aDone:
		t.Logf("node a's client, after the thaw: %s", r)
	case <-time.After(10 * time.Second):
		t.Fatal("node a did not answer after SIGCONT")
	}
	// a's late result must not have made v1 current again: a write based
	// on v1 is refused, one based on v2 passes.
	late, err := send(client, http.MethodPut, a.url+"/doc", `{"value":2}`, map[string]string{"If-Match": `"v1"`, "X-Request-Id": "late"})
	if err != nil || late.StatusCode != http.StatusConflict {
		t.Fatalf("write based on v1 after a's late answer: %v %d %s", err, late.StatusCode, late.body)
	}
	ok, err := send(client, http.MethodPut, a.url+"/doc", `{"value":3}`, map[string]string{"If-Match": `"v2"`, "X-Request-Id": "ok"})
	if err != nil || ok.StatusCode != http.StatusNoContent {
		t.Fatalf("write based on v2: %v %d %s", err, ok.StatusCode, ok.body)
	}
	l.check(t, map[string]bool{"fresh": true, "ok": true})
}

// TestRedisStalledNodeDoesNotSend: node a freezes (SIGSTOP) after taking a
// key's claim but before forwarding its write (its preflight read is at the
// upstream), for longer than its lease. Node b takes the claim over and
// writes. When a wakes, its claim may be gone: it does not send the write
// it decided before the freeze, and answers write-in-progress instead.
func TestRedisStalledNodeDoesNotSend(t *testing.T) {
	rds := backends.StartRedis(t)
	l, up := startLedger(t)
	s := redisSite("\t\tlock_timeout 10s\n\t\tpreflight", "\t\t\taddress "+rds.Addr()+"\n\t\t\tlease 1s", up)
	a, b := startNode(t, s), startNode(t, s)
	client := counterClient(false)

	hold := make(chan struct{})
	l.holdReads = hold
	aDone := make(chan sent, 1)
	go func() {
		r, err := send(client, http.MethodPut, a.url+"/doc", `{"value":1}`, map[string]string{"If-Match": `"v0"`, "X-Request-Id": "a"})
		if err != nil {
			t.Error(err)
		}
		aDone <- r
	}()
	deadline := time.Now().Add(5 * time.Second)
	for l.reads.Load() == 0 { // a holds the claim and asks the upstream first (preflight)
		if time.Now().After(deadline) {
			t.Fatal("node a's preflight read never reached the upstream")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.freeze(t)
	defer a.cmd.Process.Signal(syscall.SIGCONT)
	close(hold)
	r, err := send(client, http.MethodPut, b.url+"/doc", `{"value":1}`, map[string]string{"If-Match": `"v0"`, "X-Request-Id": "b"})
	if err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("b's write after taking a's claim over: %v %d %s", err, r.StatusCode, r.body)
	}
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var ar sent
	select {
	case ar = <-aDone:
	case <-time.After(10 * time.Second):
		t.Fatal("node a did not answer after SIGCONT")
	}
	if ar.Response == nil || ar.StatusCode != http.StatusConflict || !strings.Contains(ar.body, "write-in-progress") {
		t.Fatalf("a's write after the freeze: %+v, want 409 write-in-progress", ar)
	}
	if ar.Header.Get("Retry-After") == "" {
		t.Error("write-in-progress without Retry-After")
	}
	if n := l.arrived.Load(); n != 1 {
		t.Errorf("%d writes reached the upstream, want only b's", n)
	}
	l.check(t, map[string]bool{"b": true})
}

// freeze stops the node with SIGSTOP and waits until every one of its
// threads is stopped: kill(2) returns before a thread that is running on
// another core has stopped.
func (n *node) freeze(t *testing.T) {
	t.Helper()
	pid := n.cmd.Process.Pid
	if err := n.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		stopped := len(tasks) > 0
		for _, task := range tasks {
			b, err := os.ReadFile(task)
			// the state follows the command name, which is in parentheses
			if i := strings.LastIndexByte(string(b), ')'); err != nil || i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the node's threads did not all stop after SIGSTOP")
		}
		time.Sleep(time.Millisecond)
	}
}
