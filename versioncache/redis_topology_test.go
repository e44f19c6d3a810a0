package versioncache

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// These tests run the store against the production topologies, as real
// processes (internal/backends): a Redis Cluster of three masters, a
// primary with a replica behind a Sentinel, and a TLS-only Redis.

func openRedis(t testing.TB, cfg RedisConfig) *Redis {
	t.Helper()
	r, err := NewRedis(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func commitOn(t *testing.T, s Store, key, version string) {
	t.Helper()
	l, snap := claimOn(t, s, key)
	if err := l.Commit(context.Background(), snap.State.AfterWrite(nil, put(200, version))); err != nil {
		t.Fatalf("Commit(%q, %s): %v", key, version, err)
	}
}

func TestRedisClusterNeedsHashTag(t *testing.T) {
	for _, tt := range []struct {
		cfg  RedisConfig
		want string
	}{
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}, Cluster: true, KeyPrefix: "caddy-conflict:etag:"}, "hash tag"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}, Cluster: true, KeyPrefix: "{}:"}, "hash tag"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}, Cluster: true, KeyPrefix: "{t}:", DB: 1}, "database 0"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1"}, Cluster: true, MasterName: "m", KeyPrefix: "{t}:"}, "exclude"},
		{RedisConfig{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, KeyPrefix: "{t}:"}, "neither Cluster nor Sentinel"},
		{RedisConfig{KeyPrefix: "{t}:"}, "no address"},
	} {
		if _, err := NewRedis(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want %q", tt.cfg, err, tt.want)
		}
	}
	for key, want := range map[string]string{"{a}:x": "a", "p:{etag}:k": "etag", "{}x{y}": "", "{a": "", "x}{b}": "b"} {
		if got, _ := HashTag(key); got != want {
			t.Errorf("HashTag(%q) = %q, want %q", key, got, want)
		}
	}
}

// clusterAdmin is a plain cluster client for the test's own checks.
func clusterAdmin(t testing.TB, c *backends.RedisCluster) *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.Addrs(), Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// TestRedisCluster runs claim, commit, observe, list and purge through
// Cluster clients, for two tables whose hash tags land on different
// masters, with two store nodes per table.
func TestRedisCluster(t *testing.T) {
	c := backends.StartRedisCluster(t)
	admin := clusterAdmin(t, c)
	ctx := context.Background()
	prefixes := []string{"{caddy-conflict:etag}:", "{caddy-conflict:json-1a2b3c4d}:"}
	// The two tables' slots, and the masters that own them, differ.
	slots := make([]int64, len(prefixes))
	owners := make([]string, len(prefixes))
	for i, p := range prefixes {
		s, err := admin.ClusterKeySlot(ctx, p+"x").Result()
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := HashTag(p)
		if s2, _ := admin.ClusterKeySlot(ctx, "{"+tag+"}").Result(); s2 != s {
			t.Fatalf("slot of %q is %d, of its tag %d", p, s, s2)
		}
		slots[i] = s
		owners[i] = slotOwner(t, admin, s)
	}
	if slots[0] == slots[1] || owners[0] == owners[1] {
		t.Fatalf("tables share a slot or a master: slots %v on %v", slots, owners)
	}
	t.Logf("table slots %v on masters %v", slots, owners)

	for i, prefix := range prefixes {
		cfg := RedisConfig{Addrs: c.Addrs(), Cluster: true, KeyPrefix: prefix, Lease: 2 * time.Second}
		a, b := openRedis(t, cfg), openRedis(t, cfg)
		if err := a.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.EvictionPolicy(ctx); err != nil {
			t.Errorf("EvictionPolicy: %v", err)
		}

		// A commit on a is what b's claim decides on.
		const doc = "example.com/doc"
		l, snap := claimOn(t, a, doc)
		if snap.Found {
			t.Fatalf("new key: %+v", snap)
		}
		if err := l.Commit(ctx, snap.State.AfterWrite(nil, put(200, `"v2"`))); err != nil {
			t.Fatal(err)
		}
		l, snap = claimOn(t, b, doc)
		if !snap.Found || snap.State.Version != `"v2"` {
			t.Fatalf("table %d: node b sees %+v", i, snap)
		}
		l.Release()

		// A read is recorded and seen by the other node.
		const read = "example.com/read"
		tok := b.ReadStart(read)
		if ok, err := b.Observe(ctx, read, tok, `"r1"`, false); err != nil || !ok {
			t.Fatalf("Observe = %v %v", ok, err)
		}
		if s, ok := getOn(t, a, read); !ok || s.Version != `"r1"` {
			t.Fatalf("Get after Observe = %+v %v", s, ok)
		}

		// Writers on both nodes: the claim serializes them across the
		// cluster, and commits wake the waiting node (pub/sub).
		const counter = "example.com/counter"
		var wg sync.WaitGroup
		for w := range 4 {
			s := []*Redis{a, b}[w%2]
			wg.Go(func() {
				for range 15 {
					l, snap, err := s.Claim(ctx, counter, 10*time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(snap.State.Version)
					if err := l.Commit(ctx, conflict.State{Version: strconv.Itoa(n + 1)}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if s, _ := getOn(t, b, counter); s.Version != "60" {
			t.Fatalf("counter = %q, want 60", s.Version)
		}

		// Listing and a prefix purge (the key index, a sorted set in the
		// table's slot; the listing reads the hashes in one pipeline).
		for j := range 5 {
			commitOn(t, a, "example.com/list/"+strconv.Itoa(j), `"l"`)
		}
		items, _, err := b.List(ctx, "example.com/list/", "", 100)
		if err != nil || len(items) != 5 {
			t.Fatalf("List = %d items, %v", len(items), err)
		}
		if n, err := b.Purge(ctx, "example.com/list/", true); err != nil || n != 5 {
			t.Fatalf("Purge = %d, %v", n, err)
		}
		if items, _, err := a.List(ctx, "example.com/list/", "", 100); err != nil || len(items) != 0 {
			t.Fatalf("List after purge = %v, %v", items, err)
		}
		if st := a.Stats(); st.Entries == 0 {
			t.Errorf("Stats.Entries = 0: no ZCARD of the index")
		}

		// Every key of the table, index and channel included, is in the
		// table's slot: on the one master that owns it.
		keys := scanAll(t, admin, prefix)
		if len(keys) < 4 {
			t.Fatalf("keys of %q: %q", prefix, keys)
		}
		for _, k := range keys {
			if s, _ := admin.ClusterKeySlot(ctx, k).Result(); s != slots[i] {
				t.Errorf("key %q in slot %d, want %d", k, s, slots[i])
			}
		}
	}
}

// TestRedisClusterPubSub: a commit's notification, published by a script
// on the table's master, reaches a subscriber connected to the cluster.
func TestRedisClusterPubSub(t *testing.T) {
	c := backends.StartRedisCluster(t)
	admin := clusterAdmin(t, c)
	const prefix = "{pubsub}:"
	a := openRedis(t, RedisConfig{Addrs: c.Addrs(), Cluster: true, KeyPrefix: prefix})
	sub := admin.Subscribe(context.Background(), prefix+"released")
	defer sub.Close()
	if _, err := sub.Receive(context.Background()); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	commitOn(t, a, "example.com/p", `"p1"`)
	select {
	case m := <-sub.Channel():
		t.Logf("released: %q", m.Payload)
	case <-time.After(5 * time.Second):
		t.Fatal("no release notification within 5s")
	}
}

func slotOwner(t *testing.T, c *redis.ClusterClient, slot int64) string {
	t.Helper()
	ranges, err := c.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if int64(r.Start) <= slot && slot <= int64(r.End) {
			return r.Nodes[0].Addr
		}
	}
	t.Fatalf("no master owns slot %d", slot)
	return ""
}

func scanAll(t *testing.T, c *redis.ClusterClient, prefix string) []string {
	t.Helper()
	var mu sync.Mutex
	var keys []string
	err := c.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		it := m.Scan(ctx, 0, escapeGlob(prefix)+"*", 100).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`, `\`, `\\`)
	return r.Replace(s)
}

// TestRedisSentinelFailover: writes keep working across a failover, and
// no claim after it decides on a state older than one committed before it
// (a key whose latest state did not reach the replica at worst reads as
// unknown or uncertain: its next write re-reads the upstream).
func TestRedisSentinelFailover(t *testing.T) {
	s := backends.StartRedisSentinel(t)
	cfg := RedisConfig{Addrs: []string{s.SentinelAddr()}, MasterName: backends.SentinelMaster,
		KeyPrefix: "{caddy-conflict:etag}:", Timeout: time.Second, Lease: 2 * time.Second}
	a := openRedis(t, cfg)
	ctx := context.Background()
	const keys = 20
	for i := range keys {
		k := "example.com/s/" + strconv.Itoa(i)
		commitOn(t, a, k, `"v1"`)
		commitOn(t, a, k, `"v2"`)
	}
	promoted := s.Failover()
	t.Logf("failover to %s", promoted)

	// The first calls may fail while the client finds the new primary
	// (on_store_error meanwhile); they must succeed within a few seconds.
	var l Lease
	var snap Snapshot
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, snap, err = a.Claim(ctx, "example.com/s/0", 5*time.Second)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Claim after failover: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.Release()
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	b := openRedis(t, cfg) // a node that starts after the failover
	seen, reread := 0, 0
	for i := range keys {
		k := "example.com/s/" + strconv.Itoa(i)
		for _, node := range []*Redis{a, b} {
			l, snap, err = node.Claim(ctx, k, 5*time.Second)
			if err != nil {
				t.Fatalf("Claim(%s) after failover: %v", k, err)
			}
			switch {
			case snap.Found && !snap.State.Uncertain && snap.State.Version == `"v2"`:
				seen++
			case !snap.Found || snap.State.Uncertain:
				reread++
			default:
				t.Errorf("%s after failover: %+v: a state older than the committed v2", k, snap)
			}
			l.Release()
		}
	}
	t.Logf("after failover: %d claims saw v2, %d re-read", seen, reread)

	// Writes through either node go on, and each sees the other's.
	commitOn(t, a, "example.com/s/0", `"v3"`)
	l, snap = claimOn(t, b, "example.com/s/0")
	if !snap.Found || snap.State.Version != `"v3"` {
		t.Fatalf("b after a's write: %+v", snap)
	}
	if err := l.Commit(ctx, snap.State.AfterWrite(nil, put(200, `"v4"`))); err != nil {
		t.Fatal(err)
	}
	if st, ok := getOn(t, a, "example.com/s/0"); !ok || st.Version != `"v4"` {
		t.Fatalf("a after b's write: %+v %v", st, ok)
	}
	if addr, err := s.MasterAddr(); err != nil || addr != promoted {
		t.Fatalf("master %s %v, want %s", addr, err, promoted)
	}
}

// TestRedisTLS connects with a rediss:// URL, trusting the test CA and
// presenting a client certificate; a store that trusts another CA fails
// with the certificate error.
func TestRedisTLS(t *testing.T) {
	srv := backends.StartRedisTLS(t)
	ctx := context.Background()
	cfg := RedisConfig{KeyPrefix: "{tls}:", TLS: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: srv.Certs.CAPool, Certificates: []tls.Certificate{srv.Certs.Client},
	}}
	if err := cfg.ApplyURL("rediss://" + srv.Addr() + "/3"); err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != srv.Addr() || cfg.DB != 3 || cfg.TLS.RootCAs == nil {
		t.Fatalf("ApplyURL: %+v", cfg)
	}
	a, b := openRedis(t, cfg), openRedis(t, cfg)
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	commitOn(t, a, "example.com/t", `"t1"`)
	if l, snap := claimOn(t, b, "example.com/t"); snap.State.Version != `"t1"` {
		t.Fatalf("b sees %+v", snap)
	} else {
		l.Release()
	}
	// The store's connections are there, named (the server accepts the
	// client certificate; it does not require one: tls-auth-clients optional).
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), TLSConfig: cfg.TLS.Clone(), Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer admin.Close()
	if list, err := admin.ClientList(ctx).Result(); err != nil || !strings.Contains(list, "name=caddy-conflict") {
		t.Fatalf("CLIENT LIST: %v %s", err, list)
	}

	other := backends.NewTestCerts(t)
	bad := cfg
	bad.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: other.CAPool}
	c := openRedis(t, bad)
	err := c.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Ping trusting another CA: %v, want a certificate error", err)
	}
	t.Logf("wrong CA: %v", err)
	_, _, err = c.Claim(ctx, "example.com/t", time.Second)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Claim trusting another CA: %v", err)
	}

	plain := cfg
	plain.TLS = nil
	if err := plain.ApplyURL("redis://u:p@" + srv.Addr() + "/0?dial_timeout=1s"); err == nil || !strings.Contains(err.Error(), "query") {
		t.Fatalf("ApplyURL with a query: %v", err)
	}
	if err := plain.ApplyURL("http://" + srv.Addr()); err == nil {
		t.Fatal("ApplyURL(http://) passed")
	}
	if err := plain.ApplyURL("redis://u:p@" + srv.Addr() + "/2"); err != nil || plain.TLS != nil ||
		plain.Username != "u" || plain.Password != "p" || plain.DB != 2 {
		t.Fatalf("ApplyURL(redis://): %+v %v", plain, err)
	}
}

// redisACL is the ACL SETUSER of README.md's "Redis ACL", read from the
// README itself so that the two cannot drift; its password is replaced.
func redisACL(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(line, "ACL SETUSER "); ok {
			f := strings.Fields(strings.ReplaceAll(rest, ">PASSWORD", ">s3cret"))
			if len(f) < 5 || f[0] != "caddy-conflict" {
				t.Fatalf("README's ACL SETUSER line: %q", line)
			}
			return f
		}
	}
	t.Fatal("README.md has no ACL SETUSER line")
	return nil
}

// TestRedisACL: the store works as a user with just the README's ACL.
func TestRedisACL(t *testing.T) {
	srv := backends.StartRedis(t)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer admin.Close()
	args := []any{"ACL", "SETUSER"}
	for _, a := range redisACL(t) {
		args = append(args, a)
	}
	if err := admin.Do(ctx, args...).Err(); err != nil {
		t.Fatal(err)
	}
	cfg := RedisConfig{Addr: srv.Addr(), Username: "caddy-conflict", Password: "s3cret", DB: 1,
		KeyPrefix: "{caddy-conflict:etag}:"}
	a, b := openRedis(t, cfg), openRedis(t, cfg)
	if err := a.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := a.EvictionPolicy(ctx); err != nil || p == "" {
		t.Fatalf("EvictionPolicy = %q %v", p, err)
	}
	commitOn(t, a, "example.com/acl", `"v1"`)
	l, snap := claimOn(t, b, "example.com/acl")
	if snap.State.Version != `"v1"` {
		t.Fatalf("b sees %+v", snap)
	}
	l.Release()
	tok := b.ReadStart("example.com/read")
	if ok, err := b.Observe(ctx, "example.com/read", tok, `"r"`, false); err != nil || !ok {
		t.Fatalf("Observe = %v %v", ok, err)
	}
	if err := a.Record(ctx, "example.com/rec", conflict.State{Version: `"x"`}); err != nil {
		t.Fatal(err)
	}
	if items, _, err := a.List(ctx, "example.com/", "", 10); err != nil || len(items) != 3 {
		t.Fatalf("List = %v %v", items, err)
	}
	if n, err := a.Purge(ctx, "example.com/", true); err != nil || n != 3 {
		t.Fatalf("Purge = %d %v", n, err)
	}
	if st := a.Stats(); st.Hits+st.Misses == 0 {
		t.Errorf("Stats %+v", st)
	}
	// Nothing else: a key outside the prefix is refused.
	user := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "caddy-conflict", Password: "s3cret",
		Protocol: 2, DisableIdentity: true, MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}})
	defer user.Close()
	if err := user.Get(ctx, "other").Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("GET other: %v, want NOPERM", err)
	}
}
