package versioncache

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// Redis losing data (redis_epoch.go), against a real redis-server: FLUSHALL,
// a restart without persistence, a restart from an older snapshot.

// written commits version as key's state through s.
func written(t *testing.T, s *Redis, key, version string) {
	t.Helper()
	l, _ := claimOn(t, s, key)
	if err := l.Commit(context.Background(), conflict.State{Version: version, Live: true}); err != nil {
		t.Fatal(err)
	}
}

func admin(t *testing.T, srv *backends.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// claimSnap claims key and releases the claim at once.
func claimSnap(t *testing.T, s *Redis, key string) Snapshot {
	t.Helper()
	l, snap := claimOn(t, s, key)
	l.Release()
	return snap
}

func TestRedisFirstUseNoGrace(t *testing.T) {
	_, a, _ := twoNodes(t, RedisConfig{})
	if snap := claimSnap(t, a, "example.com/new"); snap.Found || snap.Dropped {
		t.Fatalf("a key of a table in its first use: %+v, want unknown", snap)
	}
}

func TestRedisFlushDropsKeys(t *testing.T) {
	cfg := RedisConfig{TTL: 600 * time.Millisecond, Lease: 200 * time.Millisecond}
	srv, a, b := twoNodes(t, cfg)
	written(t, a, "example.com/doc", `"v2"`)
	if s, ok := getOn(t, b, "example.com/doc"); !ok || s.Version != `"v2"` {
		t.Fatalf("b before the loss: %+v %v", s, ok)
	}
	if err := admin(t, srv).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// b knew the table's epoch: the loss is noticed by its next claim.
	snap := claimSnap(t, b, "example.com/doc")
	if snap.Found || !snap.Dropped {
		t.Fatalf("after FLUSHALL: %+v, want dropped (re-read before deciding)", snap)
	}
	if snap := claimSnap(t, a, "example.com/other"); snap.Found || !snap.Dropped {
		t.Fatalf("another key after FLUSHALL: %+v, want dropped: the proxy may have written it", snap)
	}
	if a.Losses() != 1 || b.Losses() != 1 {
		t.Errorf("losses seen: a %d, b %d, want 1 each", a.Losses(), b.Losses())
	}
	// A write after the loss is trusted at once.
	written(t, b, "example.com/doc", `"v3"`)
	if snap := claimSnap(t, a, "example.com/doc"); !snap.Found || snap.State.Version != `"v3"` {
		t.Fatalf("written after the loss: %+v", snap)
	}
	// After the grace (ttl + lease), unseen keys are unknown again.
	time.Sleep(cfg.TTL + cfg.Lease + 100*time.Millisecond)
	if snap := claimSnap(t, a, "example.com/third"); snap.Found || snap.Dropped {
		t.Fatalf("after the grace: %+v, want unknown", snap)
	}
}

func TestRedisRestartDropsKeys(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{Lease: 300 * time.Millisecond})
	written(t, a, "example.com/doc", `"v2"`)
	getOn(t, b, "example.com/doc")
	srv.Stop()
	srv.Start() // empty: no persistence
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, snap, err := b.Claim(context.Background(), "example.com/doc", time.Second)
		if err == nil {
			l.Release()
			if snap.Found || !snap.Dropped {
				t.Fatalf("after a restart without persistence: %+v, want dropped", snap)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("claim after the restart: %v", err)
		}
		time.Sleep(RedisRetryAfter / 4)
	}
}

// TestRedisRollbackDetected: Redis restarts from a snapshot older than the
// last writes (as a failover to a replica that lagged does): the states
// it brings back look alive but may be stale. A node that saw a later
// write notices the table's write count went back, and no state of the
// old epoch is trusted.
func TestRedisRollbackDetected(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{Lease: 300 * time.Millisecond})
	ctx := context.Background()
	written(t, a, "example.com/doc", `"v1"`)
	if err := admin(t, srv).Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	written(t, a, "example.com/doc", `"v2"`) // lost with the restart
	getOn(t, b, "example.com/doc")
	srv.Stop()
	srv.Start() // loads the snapshot: v1
	raw, err := admin(t, srv).HGet(ctx, b.cfg.KeyPrefix+"example.com/doc", "st").Result()
	if err != nil {
		t.Fatalf("the snapshot was not loaded: %v", err)
	}
	t.Logf("the restarted Redis holds %s", raw)
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, snap, err := b.Claim(ctx, "example.com/doc", time.Second)
		if err == nil {
			l.Release()
			if snap.Found || !snap.Dropped {
				t.Fatalf("after a rollback: %+v, want dropped (v1 is not current)", snap)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("claim after the restart: %v", err)
		}
		time.Sleep(RedisRetryAfter / 4)
	}
	if b.Losses() != 1 {
		t.Errorf("b saw %d losses, want 1", b.Losses())
	}
}

// TestRedisUnseenReadsStoreNothing: reads of keys Redis does not hold
// create nothing there unless they found the resource (a scanner of
// random paths costs Redis no memory); a found resource is learned.
func TestRedisUnseenReadsStoreNothing(t *testing.T) {
	srv, a, _ := twoNodes(t, RedisConfig{})
	ctx := context.Background()
	c := admin(t, srv)
	getOn(t, a, "example.com/first") // the table's record
	before, _ := c.DBSize(ctx).Result()
	for i := range 100 {
		key := "example.com/scan/" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if ok, err := a.Observe(ctx, key, a.ReadStart(key), "", true); err != nil || ok {
			t.Fatalf("a 404 of an unseen key: recorded %v, %v", ok, err)
		}
	}
	if after, _ := c.DBSize(ctx).Result(); after != before {
		t.Fatalf("100 reads of unseen paths: DBSIZE %d -> %d", before, after)
	}
	key := "example.com/found"
	if ok, err := a.Observe(ctx, key, a.ReadStart(key), `"v1"`, false); err != nil || !ok {
		t.Fatalf("a 200 of an unseen key: recorded %v, %v", ok, err)
	}
	if s, ok := getOn(t, a, key); !ok || s.Version != `"v1"` {
		t.Fatalf("learned: %+v %v", s, ok)
	}
	// A write that happened while the read was in flight wins.
	key = "example.com/raced"
	tok := a.ReadStart(key)
	written(t, a, key, `"v2"`)
	if ok, _ := a.Observe(ctx, key, tok, `"v1"`, false); ok {
		t.Fatal("a read that started before a write was recorded")
	}
	if s, _ := getOn(t, a, key); s.Version != `"v2"` {
		t.Fatalf("after the late read: %+v", s)
	}
}

// TestRedisClockJump: a node compares Redis's TIME with its own monotonic
// clock on every reply; a jump (a step of Redis's clock, or a failover to
// a host whose clock differs) is told apart from the call's latency.
func TestRedisClockJump(t *testing.T) {
	r := &Redis{base: time.Now()}
	const off = int64(5e12) // Redis's clock is 5e12 µs ahead of the node's
	ms := int64(time.Millisecond)
	if r.see("e", 1, off+1000, 0, 2*ms) {
		t.Fatal("the first reply cannot be a jump")
	}
	if r.see("e", 2, off+10_300, 10*ms, 10*ms+400*ms) {
		t.Fatal("a reply that took 400 ms called a jump")
	}
	// The node stalls 5 s between sending and reading: what the reply
	// allows widens, it does not move.
	if r.see("e", 3, off+20_000, 20*ms, 20*ms+5000*ms) {
		t.Fatal("a 5 s stall of the node called a jump")
	}
	if !r.see("e", 4, off+10_000_000+6_000_000, 6000*ms, 6001*ms) {
		t.Fatal("a 10 s step forward not seen")
	}
	if !r.see("e", 5, off+7_000_000, 7000*ms, 7001*ms) {
		t.Fatal("a 10 s step back not seen")
	}
}

// TestRedisMemoryPerKey measures what a written key costs Redis (MEMORY
// USAGE of its hash, and its share of the key index) for keys like the
// README's example, and holds it under the README's figure.
func TestRedisMemoryPerKey(t *testing.T) {
	srv, a, _ := twoNodes(t, RedisConfig{})
	ctx := context.Background()
	c := admin(t, srv)
	const n = 2000
	for i := range n {
		written(t, a, "example.com/articles/"+strconv.Itoa(100000+i), `"`+strconv.Itoa(i)+`-1a2b3c4d"`)
	}
	var hashes int64
	for i := range n {
		m, err := c.MemoryUsage(ctx, a.cfg.KeyPrefix+"example.com/articles/"+strconv.Itoa(100000+i), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		hashes += m
	}
	index, err := c.MemoryUsage(ctx, a.keys, 0).Result()
	if err != nil {
		t.Fatal(err)
	}
	perHash, perIndex := hashes/n, index/n
	t.Logf("per written key: %d bytes of hash, %d in the key index", perHash, perIndex)
	if perHash > 300 || perIndex > 160 {
		t.Errorf("per key: %d + %d bytes, more than the README's 300 + 160", perHash, perIndex)
	}
}

// TestRedisLossWhileClaimHeld: Redis loses its data while node a holds a
// key's claim (its write may be at the upstream). Node b's claim, granted
// within a lease of the loss, is provisional: a's next renewal takes the
// key back, b waits for a's write like for any other, and decides on its
// result. Two writes to one key are never in flight at once.
func TestRedisLossWhileClaimHeld(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{Lease: 600 * time.Millisecond})
	ctx := context.Background()
	const key = "example.com/doc"
	written(t, a, key, `"v1"`)
	getOn(t, b, key) // b knows the table's epoch
	la, _ := claimOn(t, a, key)
	if err := admin(t, srv).FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	type claimed struct {
		l    Lease
		snap Snapshot
		err  error
		at   time.Time
	}
	got := make(chan claimed, 1)
	go func() {
		l, snap, err := b.Claim(ctx, key, 5*time.Second)
		got <- claimed{l, snap, err, time.Now()}
	}()
	time.Sleep(400 * time.Millisecond) // a renews (every lease/3) and takes its claim back
	if !Held(la) {
		t.Fatal("a's claim is not held after the loss")
	}
	select {
	case c := <-got:
		t.Fatalf("b got the claim while a still held it: %+v", c)
	default:
	}
	committed := time.Now()
	if err := la.Commit(ctx, conflict.State{Version: `"v2"`, Live: true}); err != nil {
		t.Fatalf("a's commit after the loss: %v", err)
	}
	c := <-got
	if c.err != nil {
		t.Fatal(c.err)
	}
	defer c.l.Release()
	if c.at.Before(committed) {
		t.Fatal("b's claim returned before a's write ended")
	}
	if !c.snap.Found || c.snap.State.Version != `"v2"` {
		t.Fatalf("b decides on %+v, want a's write v2", c.snap)
	}
}

// TestRedisLateReadAcrossLoss: a read that started before a write and a
// loss is not recorded in the new epoch: the version it saw may have been
// superseded by a write Redis lost.
func TestRedisLateReadAcrossLoss(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{Lease: 300 * time.Millisecond})
	ctx := context.Background()
	getOn(t, a, "example.com/x") // a knows the table's epoch
	const key = "example.com/doc"
	tok := a.ReadStart(key) // Redis does not hold the key yet
	written(t, b, key, `"v2"`)
	if err := admin(t, srv).FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := a.Observe(ctx, key, tok, `"v1"`, false); ok {
		t.Error("a read that started before the loss was recorded")
	}
	if snap := claimSnap(t, b, key); snap.Found || !snap.Dropped {
		t.Fatalf("after the late read: %+v, want dropped (re-read)", snap)
	}
}
