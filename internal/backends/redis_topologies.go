package backends

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// topologyTimeout bounds forming a cluster, a sentinel's discovery and a failover.
const topologyTimeout = 30 * time.Second

// adminClient is a go-redis client for the launchers' own checks: RESP2 and no handshake extras
// (Redis 7.0 knows no CLIENT SETINFO), one attempt per call.
func adminClient(addr string, tlsConfig *tls.Config) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, TLSConfig: tlsConfig, Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		MaxRetries: -1, PoolSize: 1,
	})
}

// poll calls check until it succeeds or timeout passes; the error names what was awaited.
func poll(timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %v: %w", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func redisServer(t testing.TB) string {
	t.Helper()
	bin := lookPath("redis-server")
	if bin == "" {
		missing(t, "redis-server not installed: run .ci/run or apt-get install redis-server")
	}
	return bin
}

// --- Redis Cluster ------------------------------------------------------------------------------

// RedisCluster is a Redis Cluster of three masters without replicas on loopback, slots split by
// redis-cli --cluster create (0-5460, 5461-10922, 10923-16383).
type RedisCluster struct {
	// Nodes are the masters; a test may Stop one (SIGKILL) to lose its slots (cluster_state:fail
	// after cluster-node-timeout, 15 s by default) and Start it again (it rejoins with its slots,
	// from its nodes.conf, empty).
	Nodes []*Redis
}

// Addrs are the nodes' host:port, for redis.ClusterOptions.Addrs or the proxy's configuration.
func (c *RedisCluster) Addrs() []string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// StartRedisCluster starts three redis-server nodes with cluster-enabled on free loopback ports (the
// cluster bus on another free port each, cluster-port), joins them with `redis-cli --cluster create
// ... --cluster-replicas 0 --cluster-yes` and waits until every node says cluster_state:ok.
// t.Cleanup stops them.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	bin := redisServer(t)
	cli := lookPath("redis-cli")
	if cli == "" {
		missing(t, "redis-cli not installed: run .ci/run or apt-get install redis-tools")
	}
	c := &RedisCluster{}
	for range 3 {
		n := startRedis(t, bin, func(r *Redis, standard []string) []string {
			return append(standard, "--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(r.dir, "nodes-"+strconv.Itoa(r.port)+".conf"),
				"--cluster-port", strconv.Itoa(freePort(t)))
		}, nil)
		c.Nodes = append(c.Nodes, n)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), topologyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("backends: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		client := adminClient(n.Addr(), nil)
		err := poll(topologyTimeout, "cluster_state:ok on "+n.Addr(), func() error {
			info, err := client.ClusterInfo(context.Background()).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				return errors.New(strings.ReplaceAll(strings.TrimSpace(info), "\r\n", " "))
			}
			return nil
		})
		client.Close()
		if err != nil {
			t.Fatalf("backends: redis cluster: %v", err)
		}
	}
	return c
}

// --- Sentinel -----------------------------------------------------------------------------------

// SentinelMaster is the name the sentinel of StartRedisSentinel monitors its primary under.
const SentinelMaster = "mymaster"

// RedisSentinel is a primary, one replica of it and one sentinel that watches them (quorum 1,
// down-after-milliseconds 1000, failover-timeout 3000).
type RedisSentinel struct {
	t testing.TB
	// Primary and Replica are the data nodes as this harness last saw them: Failover swaps them.
	Primary, Replica *Redis
	// Sentinel is the sentinel's own process (Addr is the sentinel's address).
	Sentinel *Redis
}

// SentinelAddr is host:port of the sentinel, for redis.FailoverOptions.SentinelAddrs.
func (s *RedisSentinel) SentinelAddr() string { return s.Sentinel.Addr() }

// StartRedisSentinel starts a primary, a replica (--replicaof the primary, waited for until its link
// is up) and a sentinel (`redis-server sentinel.conf --sentinel`, the file in a temp dir: the
// sentinel rewrites it) monitoring the primary as SentinelMaster. It returns once the sentinel knows
// the replica. t.Cleanup stops all three.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	bin := redisServer(t)
	s := &RedisSentinel{t: t}
	// Full syncs start at once: a primary waits 5 s for more replicas by default
	// (repl-diskless-sync-delay), which would be most of StartRedisSentinel's time.
	noDelay := func(_ *Redis, standard []string) []string {
		return append(standard, "--repl-diskless-sync-delay", "0")
	}
	s.Primary = startRedis(t, bin, noDelay, nil)
	s.Replica = startRedis(t, bin, func(r *Redis, standard []string) []string {
		return append(noDelay(r, standard), "--replicaof", "127.0.0.1", strconv.Itoa(s.Primary.port))
	}, nil)
	replica := adminClient(s.Replica.Addr(), nil)
	defer replica.Close()
	if err := poll(topologyTimeout, "replica link up", func() error {
		return infoHas(replica, "replication", "master_link_status:up")
	}); err != nil {
		t.Fatalf("backends: redis sentinel: %v", err)
	}
	s.Sentinel = startRedis(t, bin, func(r *Redis, _ []string) []string {
		conf := strings.Join([]string{
			"port " + strconv.Itoa(r.port),
			"bind 127.0.0.1",
			"dir " + r.dir,
			"sentinel monitor " + SentinelMaster + " 127.0.0.1 " + strconv.Itoa(s.Primary.port) + " 1",
			"sentinel down-after-milliseconds " + SentinelMaster + " 1000",
			"sentinel failover-timeout " + SentinelMaster + " 3000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
		}, "\n") + "\n"
		path := filepath.Join(r.dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatalf("backends: redis sentinel: %v", err)
		}
		return []string{path, "--sentinel"} // the configuration file comes first
	}, nil)
	sentinel := s.sentinelClient()
	defer sentinel.Close()
	if err := poll(topologyTimeout, "the sentinel knows the replica", func() error {
		replicas, err := sentinel.Replicas(context.Background(), SentinelMaster).Result()
		if err != nil {
			return err
		}
		for _, r := range replicas {
			if r["name"] == s.Replica.Addr() && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return nil
			}
		}
		return fmt.Errorf("replicas %v", replicas)
	}); err != nil {
		t.Fatalf("backends: redis sentinel: %v", err)
	}
	return s
}

func (s *RedisSentinel) sentinelClient() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{
		Addr: s.Sentinel.Addr(), Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1,
	})
}

// MasterAddr asks the sentinel for the current primary (SENTINEL get-master-addr-by-name).
func (s *RedisSentinel) MasterAddr() (string, error) {
	sentinel := s.sentinelClient()
	defer sentinel.Close()
	addr, err := sentinel.GetMasterAddrByName(context.Background(), SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

// Failover kills the primary (SIGKILL) and waits until the sentinel reports the replica as master
// and the replica says role:master; it returns the new primary's address and swaps Primary and
// Replica. It took 2.7-3.2 s here. Replica is then the dead old primary: Replica.Start brings it
// back empty as a primary (its first arguments), and the sentinel turns it into a replica of the new
// primary, which took 13 s here (until then it answers writes as a second, empty primary).
// Primary.Start after a Stop would bring the promoted node back with --replicaof the old primary.
func (s *RedisSentinel) Failover() string {
	s.t.Helper()
	s.Primary.Stop()
	want := s.Replica.Addr()
	promoted := adminClient(want, nil)
	defer promoted.Close()
	err := poll(topologyTimeout, "the sentinel promotes "+want, func() error {
		addr, err := s.MasterAddr()
		if err != nil {
			return err
		}
		if addr != want {
			return fmt.Errorf("master is still %s", addr)
		}
		return infoHas(promoted, "replication", "role:master")
	})
	if err != nil {
		s.t.Fatalf("backends: redis sentinel failover: %v\nsentinel log:\n%s", err, s.Sentinel.log())
	}
	s.Primary, s.Replica = s.Replica, s.Primary
	return want
}

// infoHas checks that INFO section contains line.
func infoHas(c *redis.Client, section, line string) error {
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, line) {
		return fmt.Errorf("INFO %s lacks %q", section, line)
	}
	return nil
}

// --- TLS ----------------------------------------------------------------------------------------

// RedisTLS is a redis-server that speaks TLS only, with the certificates of a TestCerts.
type RedisTLS struct {
	*Redis
	Certs *TestCerts
}

// StartRedisTLS starts redis-server with TLS only (--port 0 --tls-port P) and
// --tls-auth-clients optional: clients must trust Certs.CAFile and may present the client
// certificate. Addr is the TLS port; Certs.ClientConfig("", withCert) connects to it.
func StartRedisTLS(t testing.TB) *RedisTLS {
	t.Helper()
	bin := redisServer(t)
	certs := NewTestCerts(t)
	r := startRedis(t, bin, func(r *Redis, standard []string) []string {
		return append(standard, "--port", "0", "--tls-port", strconv.Itoa(r.port),
			"--tls-cert-file", certs.ServerCertFile, "--tls-key-file", certs.ServerKeyFile,
			"--tls-ca-cert-file", certs.CAFile, "--tls-auth-clients", "optional")
	}, func(r *Redis) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", r.Addr(), certs.ClientConfig("", false))
		if err != nil {
			return err
		}
		return pingConn(conn)
	})
	return &RedisTLS{Redis: r, Certs: certs}
}
