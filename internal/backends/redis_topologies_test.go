package backends

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"crypto/x509"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

var quiet = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

// Keys spread over the three masters: each is served by the node its slot belongs to, and a
// multi-key command over keys of different slots fails with CROSSSLOT (hash tags {…} put keys in one
// slot).
func TestRedisCluster(t *testing.T) {
	cluster := StartRedisCluster(t)
	if n := len(cluster.Addrs()); n != 3 {
		t.Fatalf("%d nodes", n)
	}
	ctx := context.Background()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs(), Protocol: 2,
		DisableIdentity: true, MaintNotificationsConfig: quiet})
	defer client.Close()
	owners := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("article:%d", i)
		if err := client.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if got, err := client.Get(ctx, key).Int(); err != nil || got != i {
			t.Fatalf("GET %s: %d %v", key, got, err)
		}
		node, err := client.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		owners[node.Options().Addr] = true
	}
	if len(owners) != 3 {
		t.Errorf("30 keys landed on %d masters: %v", len(owners), owners)
	}
	// One node's own view: all 16384 slots assigned, 3 masters.
	info, err := adminClient(cluster.Addrs()[0], nil).ClusterInfo(ctx).Result()
	if err != nil || !strings.Contains(info, "cluster_slots_assigned:16384") || !strings.Contains(info, "cluster_size:3") {
		t.Errorf("CLUSTER INFO: %v\n%s", err, info)
	}
	err = client.Eval(ctx, "return redis.call('MGET', KEYS[1], KEYS[2])", []string{"article:1", "article:2"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("a script over two slots: %v, want CROSSSLOT", err)
	}
	if err := client.Eval(ctx, "return redis.call('MGET', KEYS[1], KEYS[2])", []string{"{t}a", "{t}b"}).Err(); err != nil {
		t.Errorf("a script over one hash tag: %v", err)
	}
}

// A failover, then a write through the FailoverClient. go-redis's FailoverClient follows the
// sentinel's +switch-master; calls in the meantime fail (connection refused, then READONLY or
// timeouts), so a writer retries.
func TestRedisSentinelFailover(t *testing.T) {
	started := time.Now()
	s := StartRedisSentinel(t)
	t.Logf("StartRedisSentinel took %v", time.Since(started).Round(100*time.Millisecond))
	ctx := context.Background()
	oldPrimary := s.Primary.Addr()
	if addr, err := s.MasterAddr(); err != nil || addr != oldPrimary {
		t.Fatalf("master %q %v, want %s", addr, err, oldPrimary)
	}
	client := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster,
		SentinelAddrs: []string{s.SentinelAddr()}, Protocol: 2, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: time.Second})
	defer client.Close()
	if err := client.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET before the failover: %v", err)
	}
	// The replica has it once replication caught up (asynchronous).
	replica := adminClient(s.Replica.Addr(), nil)
	defer replica.Close()
	if err := poll(5*time.Second, "the replica has the key", func() error { return replica.Get(ctx, "before").Err() }); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	newPrimary := s.Failover()
	t.Logf("failover to %s took %v", newPrimary, time.Since(start).Round(100*time.Millisecond))
	if newPrimary == oldPrimary || s.Primary.Addr() != newPrimary || s.Replica.Addr() != oldPrimary {
		t.Fatalf("after Failover: new %s, Primary %s Replica %s (old primary %s)", newPrimary, s.Primary.Addr(), s.Replica.Addr(), oldPrimary)
	}
	var attempts int
	err := poll(15*time.Second, "a write after the failover", func() error {
		attempts++
		return client.Set(ctx, "after", "2", 0).Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the first write after the failover took %d attempts", attempts)
	for key, want := range map[string]string{"before": "1", "after": "2"} {
		if got, err := client.Get(ctx, key).Result(); err != nil || got != want {
			t.Errorf("GET %s: %q %v, want %q", key, got, err, want)
		}
	}
	if got, err := adminClient(newPrimary, nil).Get(ctx, "after").Result(); err != nil || got != "2" {
		t.Errorf("the write did not reach the new primary: %q %v", got, err)
	}

}

// TLS only: the plain port is closed, TLS works with or without the client certificate (optional),
// and a client that does not trust the test CA is refused.
func TestRedisTLS(t *testing.T) {
	r := StartRedisTLS(t)
	ctx := context.Background()
	for _, withCert := range []bool{false, true} {
		client := redis.NewClient(&redis.Options{Addr: r.Addr(), TLSConfig: r.Certs.ClientConfig("", withCert),
			Protocol: 2, DisableIdentity: true, MaintNotificationsConfig: quiet})
		key := fmt.Sprintf("tls:%v", withCert)
		if err := client.Set(ctx, key, "yes", 0).Err(); err != nil {
			t.Fatalf("client cert %v: SET: %v", withCert, err)
		}
		if got, err := client.Get(ctx, key).Result(); err != nil || got != "yes" {
			t.Errorf("client cert %v: GET: %q %v", withCert, got, err)
		}
		client.Close()
	}
	// localhost is in the certificate too.
	_, port, _ := net.SplitHostPort(r.Addr())
	conn, err := tls.Dial("tcp", net.JoinHostPort("localhost", port), r.Certs.ClientConfig("localhost", true))
	if err != nil {
		t.Errorf("TLS to localhost: %v", err)
	} else {
		conn.Close()
	}
	// Plain RESP on the TLS port gets no PONG.
	if err := ping(r.Addr()); err == nil {
		t.Error("plain PING answered on the TLS port")
	}
	// A client without the CA fails verification.
	untrusting := redis.NewClient(&redis.Options{Addr: r.Addr(), TLSConfig: &tls.Config{ServerName: "127.0.0.1"},
		Protocol: 2, DisableIdentity: true, MaintNotificationsConfig: quiet, MaxRetries: -1, DialerRetries: 1})
	defer untrusting.Close()
	var unknownAuthority x509.UnknownAuthorityError
	if err := untrusting.Ping(ctx).Err(); err == nil || !errors.As(err, &unknownAuthority) {
		t.Errorf("a client without the CA: %v, want an unknown-authority error", err)
	}
}
