package versioncache

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// These tests run the shared history against a real redis-server: two
// *Redis on one server and prefix stand for two Caddy nodes, each with its
// own near-cache (a History).

func newTestHistory(t testing.TB, s *Redis, perKey int, maxBytes int64) *RedisHistory {
	t.Helper()
	h, ok := NewRedisHistory(s, NewHistory(perKey, maxBytes), perKey, maxBytes)
	if !ok {
		t.Fatal("NewRedisHistory: not a Redis store")
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func flush(t testing.TB, h *RedisHistory) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func rawClient(t testing.TB, srv *backends.Redis) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// memoryUsage sums MEMORY USAGE (every element counted) of the table's keys.
func memoryUsage(t testing.TB, c *redis.Client, h *RedisHistory) int64 {
	t.Helper()
	var sum int64
	for _, k := range h.Keys() {
		n, err := c.MemoryUsage(context.Background(), k, 0).Result()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		sum += n
	}
	return sum
}

func doc(n int, seed string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"seed":"` + seed + `","pad":"`)
	for b.Len() < n-2 {
		b.WriteByte('a' + byte(b.Len()%26))
	}
	b.WriteString(`"}`)
	return b.Bytes()
}

func lookupOne(h *RedisHistory, key, version string) []byte {
	return h.Lookup(context.Background(), key, version)[0]
}

// TestRedisHistoryAcrossNodes: what one node read (queued) and wrote
// (stored at once) is found by the other, in one round trip; then from its
// near-cache, in none.
func TestRedisHistoryAcrossNodes(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	ha, hb := newTestHistory(t, a, 8, 1<<20), newTestHistory(t, b, 8, 1<<20)
	v1, v2 := doc(300, "v1"), doc(300, "v2")

	ha.Add("api.test/doc", `W/"v1"`, v1) // a GET on node a
	flush(t, ha)
	ha.AddNow(context.Background(), "api.test/doc", `"v2"`, v2) // a write's response on node a

	before := hb.Stats().RoundTrips
	got := hb.Lookup(context.Background(), "api.test/doc", `"v1"`, `W/"v2"`, `"v3"`)
	if !bytes.Equal(got[0], v1) || !bytes.Equal(got[1], v2) || got[2] != nil {
		t.Fatalf("node b found %q %q %q", got[0], got[1], got[2])
	}
	if n := hb.Stats().RoundTrips - before; n != 1 {
		t.Errorf("lookup of three versions took %d round trips, want 1", n)
	}
	before = hb.Stats().RoundTrips
	if got := lookupOne(hb, "api.test/doc", "v1"); !bytes.Equal(got, v1) {
		t.Fatalf("second lookup: %q", got)
	}
	if n := hb.Stats().RoundTrips - before; n != 0 {
		t.Errorf("near-cache hit took %d round trips", n)
	}
	if s := ha.Stats(); s.Added != 2 || s.Dropped != 0 || s.Failed != 0 {
		t.Errorf("node a stats %+v", s)
	}
}

// TestRedisHistorySameVersionOtherBytes: a version held with other bytes
// names two states: Redis forgets it, and the nodes' near-caches too.
func TestRedisHistorySameVersionOtherBytes(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	ha, hb := newTestHistory(t, a, 8, 1<<20), newTestHistory(t, b, 8, 1<<20)
	ha.AddNow(context.Background(), "k", `"v1"`, []byte(`{"a":1}`))
	if got := lookupOne(hb, "k", `"v1"`); string(got) != `{"a":1}` {
		t.Fatalf("node b: %q", got)
	}
	ha.AddNow(context.Background(), "k", `"v1"`, []byte(`{"a":1}`)) // the same: kept
	if s := ha.Stats(); s.Touches != 1 {
		t.Errorf("re-add of the same bytes: %+v", s)
	}
	hb.AddNow(context.Background(), "k", `"v1"`, []byte(`{"a":2}`))
	waitFor(t, "node a's near-cache dropped k", func() bool { return lookupOne(ha, "k", `"v1"`) == nil })
	if got := lookupOne(hb, "k", `"v1"`); got != nil {
		t.Fatalf("node b still finds %q", got)
	}
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRedisHistoryPerKeyCount: per key the newest perKey representations
// (by last use), whatever node added them.
func TestRedisHistoryPerKeyCount(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{})
	ha, hb := newTestHistory(t, a, 3, 1<<20), newTestHistory(t, b, 3, 1<<20)
	for i := 1; i <= 5; i++ {
		h := ha
		if i%2 == 0 {
			h = hb
		}
		h.AddNow(context.Background(), "k", fmt.Sprintf(`"v%d"`, i), doc(200, fmt.Sprint(i)))
	}
	c := rawClient(t, srv)
	held := func() string { // the versions Redis holds (no lookup: that would mark them used)
		var out []string
		for i := 1; i <= 6; i++ {
			if c.HExists(context.Background(), ha.Keys()[0], historyID("k", fmt.Sprintf("v%d", i))).Val() {
				out = append(out, fmt.Sprintf("v%d", i))
			}
		}
		return strings.Join(out, " ")
	}
	if got := held(); got != "v3 v4 v5" {
		t.Errorf("Redis holds %s, want v3 v4 v5", got)
	}
	// A node that never saw v3 looks it up (in Redis: it is now the most
	// recently used); v4 is then the least recently used, and goes next.
	h3 := newTestHistory(t, newTestRedis(t, srv, RedisConfig{}), 3, 1<<20)
	if lookupOne(h3, "k", "v3") == nil {
		t.Fatal("node 3 does not find v3")
	}
	ha.AddNow(context.Background(), "k", `"v6"`, doc(200, "6"))
	if got := held(); got != "v3 v5 v6" {
		t.Errorf("after using v3 and adding v6 Redis holds %s, want v3 v5 v6", got)
	}
}

// TestRedisHistoryByteBound: many representations of many sizes, added by
// two nodes: the table's counter never exceeds the bound and equals the
// cost of what Redis holds, and Redis's own MEMORY USAGE of the table's
// keys stays within the bound too. The least recently used go first.
func TestRedisHistoryByteBound(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{})
	const bound = 512 << 10
	ha, hb := newTestHistory(t, a, 4, bound), newTestHistory(t, b, 4, bound)
	c := rawClient(t, srv)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var maxUsed, maxMem int64
	for i := range 400 {
		h := ha
		if i%2 == 1 {
			h = hb
		}
		size := 50 + rng.IntN(20<<10)
		if i%50 == 0 {
			size = 200 << 10 // now and then a large one
		}
		h.AddNow(ctx, fmt.Sprintf("api.test/items/%d", rng.IntN(120)), fmt.Sprintf(`"v%d"`, i), doc(size, fmt.Sprint(i)))
		// The most recently used key survives what follows it.
		if i%40 == 0 {
			used, err := ha.UsedBytes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mem := memoryUsage(t, c, ha)
			maxUsed, maxMem = max(maxUsed, used), max(maxMem, mem)
		}
	}
	used, _ := ha.UsedBytes(ctx)
	mem := memoryUsage(t, c, ha)
	maxUsed, maxMem = max(maxUsed, used), max(maxMem, mem)
	if maxUsed > bound {
		t.Errorf("counter reached %d bytes, bound %d", maxUsed, bound)
	}
	if maxMem > bound {
		t.Errorf("MEMORY USAGE of the table reached %d bytes, bound %d", maxMem, bound)
	}
	// The counter is the cost of what Redis holds.
	all, err := c.HGetAll(ctx, ha.Keys()[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for id, body := range all {
		sum += redisHistoryCost(len(body), len(id))
	}
	if sum != used {
		t.Errorf("counter %d, cost of the %d entries held %d", used, len(all), sum)
	}
	for _, k := range ha.Keys()[1:3] {
		if n := c.ZCard(ctx, k).Val(); n != int64(len(all)) {
			t.Errorf("%q has %d members, the hash %d", k, n, len(all))
		}
	}
	ev := ha.Stats().Evictions + hb.Stats().Evictions
	t.Logf("bound %d: counter max %d, MEMORY USAGE max %d (now %d for %d entries, %.0f%% of the counter); %d evictions",
		bound, maxUsed, maxMem, mem, len(all), 100*float64(mem)/float64(used), ev)
	if ev == 0 {
		t.Error("nothing was evicted: the test did not reach the bound")
	}
}

// TestRedisHistoryMemoryUsage measures what a representation costs in
// Redis (MEMORY USAGE, every element counted) against what the bound
// counts for it, for small and large bodies: the count must not be below
// the memory.
func TestRedisHistoryMemoryUsage(t *testing.T) {
	srv := backends.StartRedis(t)
	c := rawClient(t, srv)
	ctx := context.Background()
	long := strings.Repeat("x", 180)
	for _, c2 := range []struct {
		size, n int
		key     string
	}{
		{2, 1, "api.test/a"}, {20, 10, "api.test/a"}, {100, 130, "api.test/articles/"}, {100, 1000, "api.test/articles/"},
		{100, 300, long}, {1 << 10, 300, "api.test/articles/"}, {1 << 10, 300, long}, {16 << 10, 200, "api.test/articles/"},
		{256 << 10, 16, "api.test/articles/"}, {1 << 20, 4, "api.test/articles/"},
	} {
		size, n := c2.size, c2.n
		s := newTestRedis(t, srv, RedisConfig{KeyPrefix: fmt.Sprintf("mem%d-%d-%d:", size, n, len(c2.key))})
		h := newTestHistory(t, s, 8, 256<<20)
		for i := range n {
			h.AddNow(ctx, fmt.Sprintf("%s%d", c2.key, i), `W/"1a-2b3c4d5e6f"`, doc(size, fmt.Sprint(i)))
		}
		used, _ := h.UsedBytes(ctx)
		mem := memoryUsage(t, c, h)
		t.Logf("body %7d B, key %3d B, %4d entries: MEMORY USAGE %8.0f B per entry (%4.0f B beside the body), counted %8.0f B",
			size, len(c2.key), n, float64(mem)/float64(n), float64(mem)/float64(n)-float64(size), float64(used)/float64(n))
		if mem > used+redisHistoryTableOverhead {
			t.Errorf("body %d B: Redis uses %d B for %d entries, the bound counts %d", size, mem, n, used)
		}
	}
}

// TestRedisHistoryScopes: a scope's representations are other entries; a
// key's drop reaches every scope of that key and nothing else, in Redis
// and in the other node's near-cache.
func TestRedisHistoryScopes(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	ha, hb := newTestHistory(t, a, 8, 1<<20), newTestHistory(t, b, 8, 1<<20)
	ctx := context.Background()
	ha.AddNow(ctx, "k\x00alice", `"v1"`, []byte(`{"who":"alice"}`))
	ha.AddNow(ctx, "k\x00bob", `"v1"`, []byte(`{"who":"bob"}`))
	ha.AddNow(ctx, "k", `"v1"`, []byte(`{"who":"all"}`))
	ha.AddNow(ctx, "k2", `"v1"`, []byte(`{"who":"k2"}`))
	ha.AddNow(ctx, "k\x01x\x00alice", `"v1"`, []byte(`{"who":"k\u0001x"}`))
	for _, c := range []struct{ key, want string }{
		{"k\x00alice", "alice"}, {"k\x00bob", "bob"}, {"k", "all"}, {"k\x00carol", ""},
	} {
		got := lookupOne(hb, c.key, "v1")
		if (c.want == "" && got != nil) || (c.want != "" && !strings.Contains(string(got), c.want)) {
			t.Errorf("%q: %q, want %q", c.key, got, c.want)
		}
	}
	hb.DropKey(ctx, "k") // a DELETE through node b
	fresh := newTestHistory(t, a, 8, 1<<20)
	for key, want := range map[string]bool{"k": false, "k\x00alice": false, "k\x00bob": false, "k2": true, "k\x01x\x00alice": true} {
		if got := lookupOne(fresh, key, "v1") != nil; got != want {
			t.Errorf("after dropping k, Redis holds %q: %v, want %v", key, got, want)
		}
	}
	waitFor(t, "node a's near-cache dropped every scope of k", func() bool {
		s := ha.Local().Stats()
		return s.Keys == 2
	})
}

// TestRedisHistoryPurge: an admin purge of a key or a prefix, on one node,
// drops the entries in Redis and in the other node's near-cache.
func TestRedisHistoryPurge(t *testing.T) {
	_, a, b := twoNodes(t, RedisConfig{})
	ha, hb := newTestHistory(t, a, 8, 4<<20), newTestHistory(t, b, 8, 4<<20)
	ctx := context.Background()
	for i := range 2500 { // more than one purge batch
		ha.AddNow(ctx, fmt.Sprintf("api.test/users/%d", i), `"v1"`, []byte(`{"i":1}`))
	}
	ha.AddNow(ctx, "api.test/other", `"v1"`, []byte(`{"o":1}`))
	if n := hb.Purge("api.test/users/7", false); n != 1 {
		t.Errorf("purge of one key dropped %d entries", n)
	}
	if n := hb.Purge("api.test/users/", true); n != 2499 {
		t.Errorf("prefix purge dropped %d entries, want 2499", n)
	}
	waitFor(t, "node a's near-cache purged", func() bool { return ha.Local().Stats().Keys == 1 })
	if lookupOne(hb, "api.test/other", "v1") == nil {
		t.Error("the purge dropped a key outside the prefix")
	}
	used, _ := ha.UsedBytes(ctx)
	if want := redisHistoryCost(7, len(historyID("api.test/other", "v1"))); used != want {
		t.Errorf("counter %d after the purge, want %d (one entry)", used, want)
	}
	if n := hb.Purge("", true); n != 1 {
		t.Errorf("purge of everything dropped %d", n)
	}
}

// TestRedisHistoryReadPathNoRoundTrip: Add (what a GET calls) never waits
// for Redis: with the worker held, 100 adds cost no round trip on the
// caller's goroutine; a full queue drops adds and counts them.
func TestRedisHistoryReadPathNoRoundTrip(t *testing.T) {
	_, a, _ := twoNodes(t, RedisConfig{})
	h := newTestHistory(t, a, 8, 64<<20)
	h.hold = make(chan struct{})
	before := a.RoundTrips()
	start := time.Now()
	for i := range historyQueueLen + 100 {
		h.Add(fmt.Sprintf("k%d", i), `"v1"`, []byte(`{"n":1}`))
	}
	elapsed := time.Since(start)
	if n := a.RoundTrips() - before; n != 0 {
		t.Errorf("%d adds on the read path took %d round trips", historyQueueLen+100, n)
	}
	s := h.Stats()
	if s.Dropped < 99 || s.Queued < historyQueueLen-1 {
		t.Errorf("queue of %d: stats %+v", historyQueueLen, s)
	}
	close(h.hold)
	flush(t, h)
	if s := h.Stats(); s.Added < historyQueueLen-1 || s.QueuedBytes != 0 {
		t.Errorf("after the worker ran: %+v", s)
	}
	t.Logf("%d adds in %s (%s each) with the worker held; %d dropped", historyQueueLen+100, elapsed,
		elapsed/time.Duration(historyQueueLen+100), s.Dropped)
}

// TestRedisHistoryDown: with Redis down, adds are dropped and lookups find
// only the near-cache, without waiting; when Redis is back the history
// works again.
func TestRedisHistoryDown(t *testing.T) {
	srv, a, b := twoNodes(t, RedisConfig{Timeout: 500 * time.Millisecond})
	ha, hb := newTestHistory(t, a, 8, 1<<20), newTestHistory(t, b, 8, 1<<20)
	ctx := context.Background()
	ha.AddNow(ctx, "k", `"v1"`, []byte(`{"v":1}`))
	srv.Stop()
	start := time.Now()
	ha.Add("k", `"v2"`, []byte(`{"v":2}`))
	hb.AddNow(ctx, "k", `"v3"`, []byte(`{"v":3}`))
	got := hb.Lookup(ctx, "k", "v1", "v3")
	if got[0] != nil || string(got[1]) != `{"v":3}` {
		t.Errorf("Redis down: node b found %q %q, want its near-cache's v3 only", got[0], got[1])
	}
	got = hb.Lookup(ctx, "k", "v1") // marked down: no wait at all
	if got[0] != nil {
		t.Error("found v1 with Redis down")
	}
	flush(t, ha)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Redis down cost %s", d)
	}
	if s := ha.Stats(); s.Failed == 0 {
		t.Errorf("no failure counted: %+v", s)
	}
	srv.Start()
	time.Sleep(RedisRetryAfter + 100*time.Millisecond)
	waitFor(t, "the history works again", func() bool {
		ha.AddNow(ctx, "k", `"v4"`, []byte(`{"v":4}`))
		return lookupOne(hb, "k", "v4") != nil
	})
}

// BenchmarkRedisHistoryAdd is the read path's cost of the history: Add as
// remember calls it for each GET, with the node's own History alone and
// with the shared history (near-cache plus a queued Redis add). rtt/op
// counts the round trips of the whole process, the worker's included; the
// caller's own are 0 (TestRedisHistoryReadPathNoRoundTrip).
func BenchmarkRedisHistoryAdd(b *testing.B) {
	srv := backends.StartRedis(b)
	body := doc(2<<10, "bench")
	for _, c := range []struct {
		name     string
		distinct bool
	}{{"same-representation", false}, {"new-representation", true}} {
		b.Run("local/"+c.name, func(b *testing.B) {
			h := NewHistory(8, 64<<20)
			i := 0
			for b.Loop() {
				v := `"v1"`
				if c.distinct {
					i++
					v = fmt.Sprintf(`"v%d"`, i)
				}
				h.Add("api.test/articles/1", v, body)
			}
		})
		b.Run("shared/"+c.name, func(b *testing.B) {
			s := newTestRedis(b, srv, RedisConfig{KeyPrefix: "bench-" + c.name + ":"})
			h := newTestHistory(b, s, 8, 64<<20)
			before := s.RoundTrips()
			i := 0
			for b.Loop() {
				v := `"v1"`
				if c.distinct {
					i++
					v = fmt.Sprintf(`"v%d"`, i)
				}
				h.Add("api.test/articles/1", v, body)
			}
			b.StopTimer()
			flush(b, h)
			reportRoundTrips(b, s, before)
			b.ReportMetric(float64(h.Stats().Dropped)/float64(b.N), "dropped/op")
		})
	}
}

// BenchmarkRedisReadPathHistory is a GET's work on a Redis store, hot key:
// ReadStart and Observe (answered by the near-cache), then, with the
// shared history, Add of the representation read. rtt/op counts every
// round trip of the process (the history's worker included); with the
// same representation read again and again the worker re-sends it at most
// every historyTouchEvery.
func BenchmarkRedisReadPathHistory(b *testing.B) {
	srv := backends.StartRedis(b)
	body := doc(2<<10, "bench")
	for _, withHistory := range []bool{false, true} {
		b.Run(fmt.Sprintf("history=%v", withHistory), func(b *testing.B) {
			s := newTestRedis(b, srv, RedisConfig{KeyPrefix: fmt.Sprintf("bench-read-%v:", withHistory)})
			var h *RedisHistory
			if withHistory {
				h = newTestHistory(b, s, 8, 16<<20)
			}
			ctx := context.Background()
			const key = "api.test/articles/1"
			read := func() {
				tok := s.ReadStart(key)
				if _, err := s.Observe(ctx, key, tok, `"v1"`, false); err != nil {
					b.Fatal(err)
				}
				if h != nil {
					h.Add(key, `"v1"`, body)
				}
			}
			read()
			read()
			if h != nil {
				flush(b, h)
			}
			before := s.RoundTrips()
			b.ReportAllocs()
			for b.Loop() {
				read()
			}
			b.StopTimer()
			if h != nil {
				flush(b, h)
			}
			reportRoundTrips(b, s, before)
		})
	}
}

// TestRedisHistoryCluster: in a Redis Cluster (which refuses a script's
// undeclared keys and keys of several slots), the history's scripts work
// and its keys are in the slot of the prefix's hash tag.
func TestRedisHistoryCluster(t *testing.T) {
	c := backends.StartRedisCluster(t)
	cfg := RedisConfig{Addrs: c.Addrs(), Cluster: true, KeyPrefix: "{caddy-conflict:etag}:"}
	a, b := openRedis(t, cfg), openRedis(t, cfg)
	ha, hb := newTestHistory(t, a, 2, 256<<10), newTestHistory(t, b, 2, 256<<10)
	ctx := context.Background()
	ha.Add("api.test/doc", `"v1"`, []byte(`{"v":1}`))
	flush(t, ha)
	ha.AddNow(ctx, "api.test/doc", `"v2"`, []byte(`{"v":2}`))
	ha.AddNow(ctx, "api.test/doc", `"v3"`, []byte(`{"v":3}`)) // evicts v1 (2 per key)
	for i := range 100 {
		ha.AddNow(ctx, fmt.Sprintf("api.test/big/%d", i), `"v1"`, doc(8<<10, fmt.Sprint(i))) // beyond the bound
	}
	if s := ha.Stats(); s.Failed != 0 || s.Added != 103 || s.Evictions == 0 {
		t.Fatalf("node a: %+v", s)
	}
	got := hb.Lookup(ctx, "api.test/big/99", "v1")
	if got[0] == nil {
		t.Fatal("node b does not find the newest representation")
	}
	hb.DropKey(ctx, "api.test/big/99")
	waitFor(t, "node a's near-cache dropped the key", func() bool { _, ok := ha.Local().Get("api.test/big/99", "v1"); return !ok })
	if s := hb.Stats(); s.Failed != 0 {
		t.Fatalf("node b: %+v", s)
	}
	admin := clusterAdmin(t, c)
	want, _ := admin.ClusterKeySlot(ctx, "{caddy-conflict:etag}").Result()
	for _, k := range ha.Keys() {
		if s, _ := admin.ClusterKeySlot(ctx, k).Result(); s != want {
			t.Errorf("key %q in slot %d, the table's is %d", k, s, want)
		}
	}
	used, err := ha.UsedBytes(ctx)
	if err != nil || used > 256<<10 {
		t.Errorf("counter %d (%v), bound %d", used, err, 256<<10)
	}
}
