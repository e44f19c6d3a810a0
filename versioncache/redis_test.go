package versioncache

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// These tests run against a real redis-server (internal/backends); two
// *Redis on one server and prefix stand for two Caddy nodes.

func newTestRedis(t testing.TB, srv *backends.Redis, cfg RedisConfig) *Redis {
	t.Helper()
	cfg.Addr = srv.Addr()
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "test:"
	}
	r, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// twoNodes opens two stores sharing one Redis.
func twoNodes(t *testing.T, cfg RedisConfig) (*backends.Redis, *Redis, *Redis) {
	srv := backends.StartRedis(t)
	return srv, newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
}

func claimOn(t *testing.T, s Store, key string) (Lease, Snapshot) {
	t.Helper()
	l, snap, err := s.Claim(context.Background(), key, 5*time.Second)
	if err != nil {
		t.Fatalf("Claim(%q): %v", key, err)
	}
	return l, snap
}

func getOn(t *testing.T, s Store, key string) (conflict.State, bool) {
	t.Helper()
	st, ok, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return st, ok
}

func put(status int, version string) conflict.WriteResult {
	return conflict.WriteResult{Method: http.MethodPut, Status: status, Version: version}
}

func TestRedisWriteSeenByOtherNode(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	const key = "example.com/doc"
	l, snap := claimOn(t, a, key)
	if snap.Found || snap.State.Uncertain {
		t.Fatalf("new key: %+v", snap)
	}
	if err := l.Commit(context.Background(), snap.State.AfterWrite([]string{`"v1"`}, put(200, `"v2"`))); err != nil {
		t.Fatal(err)
	}
	l, snap = claimOn(t, b, key)
	if !snap.Found || snap.State.Version != `"v2"` || !snap.State.IsSuperseded(`"v1"`) {
		t.Fatalf("node b sees %+v, want v2 with v1 superseded", snap)
	}
	l.Release()
	if s, ok := getOn(t, b, key); !ok || s.Version != `"v2"` {
		t.Fatalf("Get on b = %+v %v", s, ok)
	}
	if st := b.Stats(); st.Hits < 2 {
		t.Errorf("hits = %d", st.Hits)
	}
}

// TestRedisClaimSerializesNodes: writers on two nodes each read the
// counter in the state, add one and commit; no increment may be lost.
func TestRedisClaimSerializesNodes(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	const key = "example.com/counter"
	const writers, each = 8, 25
	var wg sync.WaitGroup
	var inside atomic.Int32
	for i := range writers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for range each {
				l, snap, err := s.Claim(context.Background(), key, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					t.Error("two writers hold the claim")
				}
				n, _ := strconv.Atoi(snap.State.Version)
				inside.Add(-1)
				if err := l.Commit(context.Background(), conflict.State{Version: strconv.Itoa(n + 1)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s, _ := getOn(t, a, key); s.Version != strconv.Itoa(writers*each) {
		t.Fatalf("counter = %q, want %d", s.Version, writers*each)
	}
}

func TestRedisClaimTimeoutAndWake(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	const key = "example.com/busy"
	l, _ := claimOn(t, a, key)
	start := time.Now()
	_, snap, err := b.Claim(context.Background(), key, 150*time.Millisecond)
	if !errors.Is(err, ErrClaimTimeout) {
		t.Fatalf("claim behind a held one: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("timed out after %s", d)
	}
	if snap.Found {
		t.Errorf("snapshot %+v", snap)
	}
	if _, _, err := b.Claim(context.Background(), key, 0); !errors.Is(err, ErrClaimTimeout) {
		t.Fatalf("claim without wait: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := b.Claim(ctx, key, 10*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim with an ending context: %v", err)
	}

	// A waiting node is woken by the commit's notification, well before
	// its polling backoff would have.
	got := make(chan time.Time)
	go func() {
		l2, snap, err := b.Claim(context.Background(), key, 10*time.Second)
		if err != nil || snap.State.Version != `"v1"` {
			t.Errorf("waiter: %v %+v", err, snap)
		}
		got <- time.Now()
		if l2 != nil {
			l2.Release()
		}
	}()
	time.Sleep(300 * time.Millisecond) // the waiter backs off to its longest poll
	committed := time.Now()
	if err := l.Commit(context.Background(), conflict.State{Version: `"v1"`}); err != nil {
		t.Fatal(err)
	}
	if d := (<-got).Sub(committed); d > 80*time.Millisecond {
		t.Errorf("waiter took %s after the commit", d)
	}
}

// TestRedisDeadNodeLeaseExpires: a node that dies mid-write stops renewing
// its claim; after the lease the key is writable on the other node, and
// uncertain (that write may have happened).
func TestRedisDeadNodeLeaseExpires(t *testing.T) {
	srv := backends.StartRedis(t)
	cfg := RedisConfig{Lease: 300 * time.Millisecond}
	a, b := newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
	const key = "example.com/dead"
	if err := a.Record(context.Background(), key, conflict.State{Version: `"v1"`, Live: true}); err != nil {
		t.Fatal(err)
	}
	claimOn(t, a, key)
	time.Sleep(2 * cfg.Lease) // renewed meanwhile: still held
	if _, _, err := b.Claim(context.Background(), key, 0); !errors.Is(err, ErrClaimTimeout) {
		t.Fatalf("claim of a renewed lease: %v", err)
	}
	_ = a.Close() // the node dies: no commit, no renewal
	start := time.Now()
	l, snap := claimOn(t, b, key)
	if d := time.Since(start); d > cfg.Lease+time.Second {
		t.Errorf("took %s to take the claim over", d)
	}
	if !snap.Found || !snap.State.Uncertain || snap.State.Version != `"v1"` {
		t.Fatalf("taken over: %+v, want v1 uncertain", snap)
	}
	if ok, _ := b.Observe(context.Background(), key, b.ReadStart(key), `"v1"`, false); ok {
		t.Error("a read was recorded while the key was claimed")
	}
	if err := l.Commit(context.Background(), conflict.State{Version: `"v2"`}); err != nil {
		t.Fatal(err)
	}
	if s, _ := getOn(t, b, key); s.Uncertain || s.Version != `"v2"` {
		t.Fatalf("after the re-read write: %+v", s)
	}
}

// TestRedisLateCommitLost: a node that lost its claim (no renewal, lease
// ran out, another node took over) records nothing, and both writes'
// results end uncertain.
func TestRedisLateCommitLost(t *testing.T) {
	srv := backends.StartRedis(t)
	cfg := RedisConfig{Lease: 200 * time.Millisecond}
	a, b := newTestRedis(t, srv, cfg), newTestRedis(t, srv, cfg)
	const key = "example.com/late"
	la, _ := claimOn(t, a, key)
	la.(*redisLease).stop() // a stalled node: its renewals stop
	lb, snap := claimOn(t, b, key)
	if !snap.State.Uncertain {
		t.Fatalf("takeover not uncertain: %+v", snap)
	}
	if err := la.Commit(context.Background(), conflict.State{Version: `"a"`}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late commit: %v", err)
	}
	if s, _ := getOn(t, a, key); s.Version == `"a"` || !s.Uncertain {
		t.Fatalf("after the late commit: %+v", s)
	}
	if err := lb.Commit(context.Background(), conflict.State{Version: `"b"`}); err != nil {
		t.Fatal(err)
	}
	if s, _ := getOn(t, b, key); s.Version != `"b"` || !s.Uncertain {
		t.Fatalf("the takeover's result: %+v, want b, uncertain (a's write may have landed after it)", s)
	}
	// The next write resolves it (the handler re-reads first).
	l, _ := claimOn(t, a, key)
	if err := l.Commit(context.Background(), conflict.State{Version: `"c"`}); err != nil {
		t.Fatal(err)
	}
	if s, _ := getOn(t, b, key); s.Version != `"c"` || s.Uncertain {
		t.Fatalf("resolved: %+v", s)
	}
}

func TestRedisLeaseOnce(t *testing.T) {
	_, a, _ := twoNodes(t, RedisConfig{})
	l, _ := claimOn(t, a, "k")
	if err := l.Commit(context.Background(), conflict.State{Version: "1"}); err != nil {
		t.Fatal(err)
	}
	l.Release()
	if err := l.Commit(context.Background(), conflict.State{Version: "2"}); err != nil {
		t.Fatal(err)
	}
	if s, _ := getOn(t, a, "k"); s.Version != "1" {
		t.Fatalf("state %+v", s)
	}
	l, _ = claimOn(t, a, "k")
	l.Release()
	l, snap := claimOn(t, a, "k")
	l.Release()
	if snap.State.Version != "1" || snap.State.Uncertain {
		t.Fatalf("after a release: %+v", snap)
	}
}

// TestRedisLateReadNotRecorded is SPEC's rule across nodes: a read that was
// in flight while a write on another node was decided or completed does not
// resurrect the version that write superseded.
func TestRedisLateReadNotRecorded(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{})
	ctx := context.Background()
	const key = "example.com/late-read"
	if ok, err := a.Observe(ctx, key, a.ReadStart(key), `"v1"`, false); !ok || err != nil {
		t.Fatalf("first read not recorded: %v", err)
	}

	// A read starts on node a; node b decides and completes a write; the
	// read answers late with the version that write superseded. (Node a's
	// near-cache still says v1, so its Observe may answer true without
	// asking Redis: what counts is that Redis keeps v2.)
	tok := a.ReadStart(key)
	l, snap := claimOn(t, b, key)
	if snap.State.Version != `"v1"` {
		t.Fatalf("node b: %+v", snap)
	}
	_, _ = a.Observe(ctx, key, tok, `"v1"`, false)
	if err := l.Commit(ctx, snap.State.AfterWrite([]string{`"v1"`}, put(200, `"v2"`))); err != nil {
		t.Fatal(err)
	}
	_, _ = a.Observe(ctx, key, tok, `"v1"`, false)
	if s, _ := getOn(t, a, key); s.Version != `"v2"` || !s.IsSuperseded(`"v1"`) {
		t.Fatalf("state %+v: the late read resurrected v1", s)
	}
	// The same without the near-cache's shortcut: the store says no.
	c := newTestRedis(t, srv, RedisConfig{NearCache: -1})
	tok = c.ReadStart(key)
	l, snap = claimOn(t, b, key)
	if ok, _ := c.Observe(ctx, key, tok, `"v2"`, false); ok {
		t.Fatal("recorded while a write was in flight")
	}
	if err := l.Commit(ctx, snap.State.AfterWrite([]string{`"v2"`}, put(200, `"v3"`))); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Observe(ctx, key, tok, `"v2"`, false); ok {
		t.Fatal("a late read was recorded")
	}
	if s, _ := getOn(t, c, key); s.Version != `"v3"` {
		t.Fatalf("state %+v", s)
	}

	// A read that starts after the write is recorded: ABA, the resource
	// really went back to v1.
	if ok, _ := c.Observe(ctx, key, c.ReadStart(key), `"v1"`, false); !ok {
		t.Fatal("a read after the write was not recorded")
	}
	if s, _ := getOn(t, b, key); s.Version != `"v1"` || s.IsSuperseded(`"v1"`) {
		t.Fatalf("after ABA: %+v", s)
	}
	// Node a's generation is now behind node b's write: its next read is
	// not recorded (it cannot tell whether it started before that write),
	// and teaches it the generation, so the one after is.
	l, snap = claimOn(t, b, key)
	if err := l.Commit(ctx, snap.State.AfterWrite([]string{`"v1"`}, put(200, `"v5"`))); err != nil {
		t.Fatal(err)
	}
	_, _ = a.Observe(ctx, key, a.ReadStart(key), `"v5"`, false)
	if ok, _ := a.Observe(ctx, key, a.ReadStart(key), `"v6"`, false); !ok {
		t.Fatal("node a did not catch up with node b's write")
	}
	if s, _ := getOn(t, b, key); s.Version != `"v6"` {
		t.Fatalf("state %+v", s)
	}

	// A purge on one node keeps reads in flight on the other out.
	tok = b.ReadStart(key)
	if n, err := a.Purge(ctx, key, false); n != 1 || err != nil {
		t.Fatalf("purge: %d %v", n, err)
	}
	if ok, _ := b.Observe(ctx, key, tok, `"v1"`, false); ok {
		t.Fatal("a read in flight during a purge was recorded")
	}
	if _, ok := getOn(t, b, key); ok {
		t.Fatal("purged key found")
	}
	// Missing: a tombstone.
	if ok, _ := b.Observe(ctx, key, b.ReadStart(key), "", true); !ok {
		t.Fatal("404 not recorded")
	}
	if s, _ := getOn(t, a, key); !s.Deleted {
		t.Fatalf("want a tombstone: %+v", s)
	}
}

// TestRedisObserveNearCache: a read that saw what the node knows costs no
// round trip; one that saw something new costs one.
func TestRedisObserveNearCache(t *testing.T) {
	_, a, _ := twoNodes(t, RedisConfig{})
	ctx := context.Background()
	const key = "example.com/hot"
	if ok, _ := a.Observe(ctx, key, a.ReadStart(key), `"v1"`, false); !ok {
		t.Fatal("not recorded")
	}
	a.near.Wait()
	before := a.RoundTrips()
	for range 10 {
		if ok, _ := a.Observe(ctx, key, a.ReadStart(key), `"v1"`, false); !ok {
			t.Fatal("not recorded")
		}
	}
	if n := a.RoundTrips() - before; n != 0 {
		t.Errorf("10 reads of a known version took %d round trips, want 0", n)
	}
	before = a.RoundTrips()
	if ok, _ := a.Observe(ctx, key, a.ReadStart(key), `"v2"`, false); !ok {
		t.Fatal("new version not recorded")
	}
	if n := a.RoundTrips() - before; n != 1 {
		t.Errorf("a read of a new version took %d round trips, want 1", n)
	}

	// With the near-cache off, every read asks Redis (without writing).
	_, c, _ := twoNodes(t, RedisConfig{NearCache: -1})
	_, _ = c.Observe(ctx, key, c.ReadStart(key), `"v1"`, false)
	c.near.Wait()
	before = c.RoundTrips()
	if ok, _ := c.Observe(ctx, key, c.ReadStart(key), `"v1"`, false); !ok {
		t.Fatal("not recorded")
	}
	if n := c.RoundTrips() - before; n != 1 {
		t.Errorf("near_cache off: %d round trips, want 1", n)
	}
}

func TestRedisTTL(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{TTL: 300 * time.Millisecond})
	ctx := context.Background()
	if err := a.Record(ctx, "k", conflict.State{Version: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := getOn(t, b, "k"); !ok {
		t.Fatal("not found")
	}
	time.Sleep(400 * time.Millisecond)
	if _, ok := getOn(t, b, "k"); ok {
		t.Fatal("found after the ttl")
	}
	_, snap := claimOn(t, b, "k")
	if snap.Found || snap.Dropped || snap.State.Known() {
		t.Fatalf("claim after the ttl: %+v", snap)
	}
}

func TestRedisPurgeAndList(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{})
	other := newTestRedis(t, srv, RedisConfig{KeyPrefix: "other:"})
	ctx := context.Background()
	for i := range 5 {
		if err := a.Record(ctx, "h/a/"+strconv.Itoa(i), conflict.State{Version: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Record(ctx, "h/b", conflict.State{Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if err := a.Record(ctx, "h/a*", conflict.State{Version: "glob"}); err != nil {
		t.Fatal(err)
	}
	if err := other.Record(ctx, "h/a/9", conflict.State{Version: "9"}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	after := ""
	for {
		items, next, err := b.List(ctx, "h/a/", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			keys = append(keys, it.Key+"="+it.State.Version)
		}
		if next == "" {
			break
		}
		after = next
	}
	want := []string{"h/a/0=0", "h/a/1=1", "h/a/2=2", "h/a/3=3", "h/a/4=4"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("List pages = %v, want %v", keys, want)
	}
	if items, _, _ := b.List(ctx, "h/a*", "", 0); len(items) != 1 || items[0].State.Version != "glob" {
		t.Fatalf("a prefix with a glob character: %v", items)
	}
	if n, err := b.Purge(ctx, "h/a/", true); n != 5 || err != nil {
		t.Fatalf("Purge prefix = %d %v", n, err)
	}
	if _, ok := getOn(t, a, "h/a/1"); ok {
		t.Fatal("purged key found")
	}
	if _, ok := getOn(t, a, "h/b"); !ok {
		t.Fatal("a key outside the prefix was purged")
	}
	if _, ok := getOn(t, other, "h/a/9"); !ok {
		t.Fatal("another table's key was purged")
	}
	if n, _ := b.Purge(ctx, "h/a/1", false); n != 0 {
		t.Fatalf("purging a purged key = %d", n)
	}
	_, snap := claimOn(t, a, "h/a/1")
	if snap.Found || snap.Dropped {
		t.Fatalf("claim after purge: %+v", snap)
	}
}

// TestRedisUnavailable: with Redis down, calls fail fast with
// ErrUnavailable (reads are simply not recorded); once it is back, the
// same store works again without being reopened.
func TestRedisUnavailable(t *testing.T) {
	srv, a, _ := twoNodes(t, RedisConfig{Timeout: 500 * time.Millisecond, Lease: 300 * time.Millisecond})
	ctx := context.Background()
	if err := a.Record(ctx, "k", conflict.State{Version: "1"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, _, err := a.Claim(ctx, "k", time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Claim with Redis down: %v", err)
	}
	start := time.Now()
	for range 100 { // fail fast: no call waits for the timeout now
		if _, _, err := a.Claim(ctx, "k", time.Second); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Claim with Redis down: %v", err)
		}
		if tok := a.ReadStart("other"); tok != 0 {
			t.Fatalf("ReadStart with Redis down = %d", tok)
		}
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("100 failing claims took %s", d)
	}
	if _, err := a.Observe(ctx, "other", 0, "1", false); err != nil {
		t.Fatalf("Observe without a token: %v", err)
	}
	if _, _, err := a.Get(ctx, "k"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with Redis down: %v", err)
	}

	srv.Start() // empty: a restart without persistence forgets everything
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, snap, err := a.Claim(ctx, "k", time.Second)
		if err == nil {
			if snap.Found {
				t.Errorf("state survived a restart without persistence: %+v", snap)
			}
			if err := l.Commit(ctx, conflict.State{Version: "2"}); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s, _ := getOn(t, a, "k"); s.Version != "2" {
		t.Fatalf("after recovery: %+v", s)
	}
}

// TestRedisCommitWhileDown: a commit that cannot reach Redis leaves the
// claim to its lease; the next write then finds the key uncertain.
func TestRedisCommitWhileDown(t *testing.T) {
	srv := backends.StartRedis(t)
	a := newTestRedis(t, srv, RedisConfig{Lease: 300 * time.Millisecond, Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	l, _ := claimOn(t, a, "k")
	// Redis restarts with persistence lost: the claim is gone too.
	srv.Stop()
	if err := l.Commit(ctx, conflict.State{Version: "1"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Commit with Redis down: %v", err)
	}
	srv.Start()
	time.Sleep(RedisRetryAfter)
	l, _ = claimOn(t, a, "k")
	if err := l.Commit(ctx, conflict.State{Version: "2"}); err != nil {
		t.Fatal(err)
	}
	// With Redis up, a lost claim (here: the key vanished) is reported.
	l, _ = claimOn(t, a, "k")
	if _, err := a.client.Del(ctx, a.cfg.KeyPrefix+"k").Result(); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, conflict.State{Version: "3"}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("commit of a vanished claim: %v", err)
	}
	if s, _ := getOn(t, a, "k"); !s.Uncertain || s.Version == "3" {
		t.Fatalf("after a lost commit: %+v", s)
	}
}

func TestRedisClose(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{Lease: 300 * time.Millisecond})
	ctx := context.Background()
	l, _ := claimOn(t, a, "k")
	waiting := make(chan error)
	go func() {
		_, _, err := a.Claim(ctx, "k", 10*time.Second)
		waiting <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting claim: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, conflict.State{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: %v", err)
	}
	if _, _, err := a.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	if _, _, err := a.Claim(ctx, "k", time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Claim: %v", err)
	}
	if err := a.Record(ctx, "k", conflict.State{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Record: %v", err)
	}
	if _, err := a.Observe(ctx, "k", 1, "", false); !errors.Is(err, ErrClosed) {
		t.Errorf("Observe: %v", err)
	}
	if _, err := a.Purge(ctx, "", true); !errors.Is(err, ErrClosed) {
		t.Errorf("Purge: %v", err)
	}
	if _, _, err := a.List(ctx, "", "", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("List: %v", err)
	}
	if a.ReadStart("k") != 0 || a.Stats() != (Stats{}) {
		t.Error("ReadStart or Stats after Close")
	}
	// The closed node's claim is left to its lease; the other node gets it.
	if _, _, err := b.Claim(ctx, "k", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestRedisStateEncoding(t *testing.T) {
	// Every field of State but Uncertain (which has its own field) survives,
	// also those added later: fill them all by reflection.
	var s conflict.State
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(true)
		case reflect.String:
			f.SetString(`"x` + strconv.Itoa(i) + `"`)
		case reflect.Slice:
			// Two elements, each with every string field set.
			sl := reflect.MakeSlice(f.Type(), 2, 2)
			for j := range 2 {
				e := sl.Index(j)
				switch e.Kind() {
				case reflect.String:
					e.SetString(`"e` + strconv.Itoa(j) + `"`)
				case reflect.Struct:
					for k := range e.NumField() {
						if e.Field(k).Kind() != reflect.String {
							t.Fatalf("State field %s: teach this test its element's field %d", v.Type().Field(i).Name, k)
						}
						e.Field(k).SetString(`"e` + strconv.Itoa(j) + strconv.Itoa(k) + `"`)
					}
				default:
					t.Fatalf("State field %s: teach this test its elements", v.Type().Field(i).Name)
				}
			}
			f.Set(sl)
		default:
			t.Fatalf("State field %s of kind %s: teach encodeState", v.Type().Field(i).Name, f.Kind())
		}
	}
	got, err := decodeState(encodeState(s), "1")
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, s)
	}
	s.Uncertain = false
	if got, _ := decodeState(encodeState(s), ""); !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip without uncertain: %+v", got)
	}
	if encodeState(s) != encodeState(got) {
		t.Fatal("encoding is not deterministic")
	}
	if _, err := decodeState("{", ""); err == nil {
		t.Fatal("malformed state accepted")
	}
}

func TestNewRedisConfig(t *testing.T) {
	for _, cfg := range []RedisConfig{
		{},
		{Addr: "127.0.0.1:1", Lease: time.Millisecond},
		{Addr: "127.0.0.1:1", Timeout: -1},
		{Addr: "127.0.0.1:1", TTL: -1},
		{Addr: "127.0.0.1:1", NearBytes: 1000},
	} {
		if r, err := NewRedis(cfg); err == nil {
			r.Close()
			t.Errorf("NewRedis(%+v) accepted", cfg)
		}
	}
}

// Benchmarks against a local redis-server (loopback). Each reports the
// round trips to Redis per operation (rtt/op).

func benchRedis(b *testing.B, cfg RedisConfig) *Redis {
	srv := backends.StartRedis(b)
	return newTestRedis(b, srv, cfg)
}

func reportRoundTrips(b *testing.B, r *Redis, before uint64) {
	b.ReportMetric(float64(r.RoundTrips()-before)/float64(b.N), "rtt/op")
}

// BenchmarkRedisClaimCommit is the write decision and its record: claim
// (check and claim, one script), then commit.
func BenchmarkRedisClaimCommit(b *testing.B) {
	r := benchRedis(b, RedisConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	s := conflict.State{Version: `"v0"`, Live: true}
	if err := r.Record(ctx, key, s); err != nil {
		b.Fatal(err)
	}
	var states [4]conflict.State
	for i := range states {
		s = s.AfterWrite([]string{s.Version}, put(200, `"v`+strconv.Itoa(i+1)+`"`))
		states[i] = s
	}
	b.ReportAllocs()
	before := r.RoundTrips()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		l, snap, err := r.Claim(ctx, key, time.Second)
		if err != nil || !snap.Found {
			b.Fatal(err, snap)
		}
		if err := l.Commit(ctx, states[i&3]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	reportRoundTrips(b, r, before)
}

// BenchmarkRedisClaimCommitParallel: writes to 64 keys from many
// goroutines (Redis serializes the scripts; the pool overlaps round trips).
func BenchmarkRedisClaimCommitParallel(b *testing.B) {
	r := benchRedis(b, RedisConfig{})
	ctx := context.Background()
	var n atomic.Int64
	before := r.RoundTrips()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			key := "example.com/articles/" + strconv.FormatInt(n.Add(1)&63, 10)
			l, _, err := r.Claim(ctx, key, 5*time.Second)
			if err != nil {
				b.Error(err)
				return
			}
			if err := l.Commit(ctx, conflict.State{Version: `"v"`}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRoundTrips(b, r, before)
}

// BenchmarkRedisObserve is the read path (ReadStart + Observe) of a read
// that saw the version the node knows: answered by the near-cache.
func BenchmarkRedisObserve(b *testing.B) {
	for _, bc := range []struct {
		name string
		near time.Duration
	}{{"near", 0}, {"nonear", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			r := benchRedis(b, RedisConfig{NearCache: bc.near})
			ctx := context.Background()
			const key = "example.com/articles/1"
			_, _ = r.Observe(ctx, key, r.ReadStart(key), `"v1"`, false)
			r.near.Wait()
			b.ReportAllocs()
			before := r.RoundTrips()
			b.ResetTimer()
			for b.Loop() {
				if ok, err := r.Observe(ctx, key, r.ReadStart(key), `"v1"`, false); !ok {
					b.Fatal("not recorded", err)
				}
			}
			b.StopTimer()
			reportRoundTrips(b, r, before)
		})
	}
}

// BenchmarkRedisObserveChanging: every read sees a new version (the worst
// case: one write to Redis per read).
func BenchmarkRedisObserveChanging(b *testing.B) {
	r := benchRedis(b, RedisConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	_, _ = r.Observe(ctx, key, r.ReadStart(key), `"v0"`, false)
	r.near.Wait()
	versions := []string{`"v1"`, `"v2"`}
	b.ReportAllocs()
	before := r.RoundTrips()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if ok, err := r.Observe(ctx, key, r.ReadStart(key), versions[i&1], false); !ok {
			b.Fatal("not recorded", err)
		}
		i++
	}
	b.StopTimer()
	reportRoundTrips(b, r, before)
}

// BenchmarkRedisGet: Get always asks Redis (one round trip).
func BenchmarkRedisGet(b *testing.B) {
	r := benchRedis(b, RedisConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	if err := r.Record(ctx, key, conflict.State{Version: `"v0"`}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	before := r.RoundTrips()
	b.ResetTimer()
	for b.Loop() {
		if _, ok, _ := r.Get(ctx, key); !ok {
			b.Fatal("miss")
		}
	}
	b.StopTimer()
	reportRoundTrips(b, r, before)
}

// List, a prefix Purge and `guard children` read the key index: what they
// cost depends on the keys under the prefix, not on the keyspace.
func TestRedisListCostsItsKeys(t *testing.T) {
	srv := backends.StartRedis(t)
	r := newTestRedis(t, srv, RedisConfig{})
	ctx := context.Background()
	for i := range 3000 {
		if err := r.Record(ctx, "h/other/"+strconv.Itoa(i), conflict.State{Version: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"h/bucket/a", "h/bucket/b"} {
		if err := r.Record(ctx, k, conflict.State{Version: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats().Entries; n != 3002 {
		t.Errorf("Stats().Entries = %d, want 3002", n)
	}
	if _, _, err := r.List(ctx, "h/bucket/", "", 10); err != nil { // warms the connection pool
		t.Fatal(err)
	}
	before := r.RoundTrips()
	items, next, err := r.List(ctx, "h/bucket/", "", 10)
	if err != nil || len(items) != 2 || next != "" {
		t.Fatalf("List = %v %q %v", items, next, err)
	}
	if n := r.RoundTrips() - before; n != 2 {
		t.Errorf("listing 2 keys among 3002 took %d round trips, want 2 (index range, one pipeline)", n)
	}
	if _, err := r.Purge(ctx, "h/none", false); err != nil { // loads the script
		t.Fatal(err)
	}
	before = r.RoundTrips()
	if n, err := r.Purge(ctx, "h/bucket/", true); n != 2 || err != nil {
		t.Fatalf("Purge prefix = %d %v", n, err)
	}
	if n := r.RoundTrips() - before; n != 3 {
		t.Errorf("purging 2 keys among 3002 took %d round trips, want 3 (index range, one per key)", n)
	}
}

// Members of keys that left Redis are swept as new keys arrive, and the
// ones a List meets are dropped: the index stays near the live keys.
func TestRedisIndexSwept(t *testing.T) {
	srv := backends.StartRedis(t)
	r := newTestRedis(t, srv, RedisConfig{})
	ctx := context.Background()
	card := func() int64 {
		t.Helper()
		n, err := r.client.ZCard(ctx, r.keys).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	const n = 300
	for i := range n {
		k := "h/old/" + strconv.Itoa(i)
		if err := r.Record(ctx, k, conflict.State{Version: "1"}); err != nil {
			t.Fatal(err)
		}
	}
	// The old keys leave Redis as if they had expired.
	for i := range n {
		if err := r.client.Del(ctx, r.cfg.KeyPrefix+"h/old/"+strconv.Itoa(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		l, _ := claimOn(t, r, "h/new/"+strconv.Itoa(i))
		if err := l.Commit(ctx, conflict.State{Version: "2"}); err != nil {
			t.Fatal(err)
		}
	}
	if ttl, err := r.client.PTTL(ctx, r.keys).Result(); err != nil || ttl <= 0 || ttl > DefaultTTL+2*time.Second {
		t.Errorf("the index expires in %s (%v), want about the keys' life", ttl, err)
	}
	// 300 arrivals checked 600 members of an index of at most 600.
	if c := card(); c > n+n/4 {
		t.Errorf("index holds %d members for %d live keys after %d arrivals", c, n, n)
	}
	if items, _, err := r.List(ctx, "h/old/", "", 0); err != nil || len(items) != 0 {
		t.Fatalf("List of gone keys = %v %v", items, err)
	}
	if c := card(); c != n {
		t.Errorf("after a List over the gone keys the index holds %d members, want %d", c, n)
	}
	items, _, err := r.List(ctx, "h/new/", "", 1000)
	if err != nil || len(items) != n {
		t.Fatalf("List of live keys = %d items, %v", len(items), err)
	}
}

// A key stored before the index existed (here: taken out of it) is listed
// again once it changes.
func TestRedisIndexCatchesUp(t *testing.T) {
	srv := backends.StartRedis(t)
	r := newTestRedis(t, srv, RedisConfig{})
	ctx := context.Background()
	if err := r.Record(ctx, "h/c/1", conflict.State{Version: "1"}); err != nil {
		t.Fatal(err)
	}
	// The index created by the table's first key expires like it.
	if ttl, err := r.client.PTTL(ctx, r.keys).Result(); err != nil || ttl <= 0 {
		t.Errorf("a new index expires in %s (%v), want the key's life", ttl, err)
	}
	if err := r.client.ZRem(ctx, r.keys, "h/c/1").Err(); err != nil {
		t.Fatal(err)
	}
	if items, _, _ := r.List(ctx, "h/c/", "", 0); len(items) != 0 {
		t.Fatalf("List = %v, want nothing (not indexed)", items)
	}
	l, _ := claimOn(t, r, "h/c/1")
	if err := l.Commit(ctx, conflict.State{Version: "2"}); err != nil {
		t.Fatal(err)
	}
	if items, _, _ := r.List(ctx, "h/c/", "", 0); len(items) != 1 || items[0].State.Version != "2" {
		t.Fatalf("List after a change = %v", items)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"h/a/", "h/a0", true},
		{"h/a\xff", "h/b", true},
		{"\xff\xff", "", false},
	} {
		if got, ok := prefixEnd(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("prefixEnd(%q) = %q %v, want %q %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
