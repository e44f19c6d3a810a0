package caddyconflict

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	zapobserver "go.uber.org/zap/zaptest/observer"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/internal/backends"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

func TestRedisStoreCaddyfile(t *testing.T) {
	var h Handler
	input := `conflict {
		store redis {
			address redis.internal:6380
			username proxy
			password {env.REDIS_PASSWORD}
			db 2
			tls {
				server_name redis.example.com
				insecure_skip_verify
			}
			key_prefix shop:
			timeout 500ms
			lease 20s
			near_cache off
			on_store_error forward
		}
	}`
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	var got RedisStore
	if err := json.Unmarshal(h.StoreRaw, &got); err != nil {
		t.Fatal(err)
	}
	want := RedisStore{
		Address: "redis.internal:6380", Username: "proxy", Password: "{env.REDIS_PASSWORD}", DB: 2,
		TLS:       &RedisTLS{ServerName: "redis.example.com", InsecureSkipVerify: true},
		KeyPrefix: "shop:", Timeout: caddy.Duration(500 * time.Millisecond), Lease: caddy.Duration(20 * time.Second),
		NearCache: -1, OnStoreError: "forward",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if !strings.Contains(string(h.StoreRaw), `"type":"redis"`) {
		t.Errorf("store JSON %s has no type", h.StoreRaw)
	}
	if got.RejectOnError() {
		t.Error("on_store_error forward rejects")
	}

	h = Handler{}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("conflict {\n store redis {\n tls \n}\n}")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h.StoreRaw), `"tls":{}`) {
		t.Errorf("bare tls: %s", h.StoreRaw)
	}
}

func TestRedisStoreCaddyfileErrors(t *testing.T) {
	for _, tt := range []struct{ block, names string }{
		{"db -1", "db"},
		{"db two", "db"},
		{"timeout soon", "timeout"},
		{"lease", "lease"},
		{"near_cache 0s", "near_cache"},
		{"tls yes", "tls"},
		{"tls {\n verify \n}", "tls"},
		{"frobnicate 1", "frobnicate"},
		{"address", "address"},
		{"cluster yes", "cluster"},
		{"sentinel", "sentinel"},
		{"url", "url"},
		{"tls_client_auth c.pem", "tls_client_auth"},
		{"tls_server_name", "tls_server_name"},
		{"tls_insecure_skip_verify yes", "tls_insecure_skip_verify"},
		{"tls_trust_pool", "tls_trust_pool"},
		{"tls_trust_pool nosuchsource x", "tls_trust_pool"},
		{"tls_frobnicate", "tls_frobnicate"},
		// A sub-directive given twice is an error naming it.
		{"db 1\ndb 2", "db: given twice"},
		{"address a:1\naddress b:1", "address: given twice"},
		{"cluster\ncluster", "cluster: given twice"},
		{"tls\ntls", "tls: given twice"},
		{"tls_server_name a\ntls {\n server_name b\n}", "tls_server_name: given twice"},
		{"tls_trust_pool file a.pem\ntls_trust_pool file b.pem", "tls_trust_pool: given twice"},
	} {
		var h Handler
		input := "conflict {\n store redis {\n" + tt.block + "\n}\n}"
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), tt.names) || !strings.Contains(err.Error(), "store") {
			t.Errorf("%q: error %v should name store and %q", tt.block, err, tt.names)
		}
	}
}

func TestRedisStoreProvision(t *testing.T) {
	t.Setenv("CONFLICT_TEST_REDIS_PASSWORD", "s3cret")
	s := RedisStore{Password: "{env.CONFLICT_TEST_REDIS_PASSWORD}"}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if s.Password != "s3cret" || s.Address != DefaultRedisAddress || s.KeyPrefix != "caddy-conflict:" ||
		!s.RejectOnError() || s.Lease == 0 || s.Timeout == 0 {
		t.Errorf("provisioned %+v", s)
	}
	if strings.Contains(s.PoolKey(StoreOptions{}), "s3cret") {
		t.Error("the pool key holds the password")
	}

	// Version sources never share keys; equal settings share a client.
	etag := StoreOptions{TTL: time.Minute, CacheSize: 1 << 20, Namespace: "etag||"}
	jsonA := StoreOptions{TTL: time.Minute, CacheSize: 1 << 20, Namespace: "json||/version"}
	jsonB := StoreOptions{TTL: time.Minute, CacheSize: 1 << 20, Namespace: "json||/rev"}
	if p := s.keyPrefix(etag.Namespace); p != "{caddy-conflict:etag}:" {
		t.Errorf("etag prefix %q", p)
	}
	if a, b := s.keyPrefix(jsonA.Namespace), s.keyPrefix(jsonB.Namespace); a == b || !strings.HasPrefix(a, "{caddy-conflict:json-") {
		t.Errorf("json prefixes %q %q", a, b)
	}
	if s.PoolKey(etag) == s.PoolKey(jsonA) || s.PoolKey(etag) != s.PoolKey(etag) {
		t.Error("pool keys")
	}
	other := s
	other.DB = 1
	if other.PoolKey(etag) == s.PoolKey(etag) {
		t.Error("another db shares the pool key")
	}
}

// TestRedisClientLogsToCaddy: once a Redis store is open, what go-redis
// itself reports (here: it cannot dial a server that is not there) reaches
// Caddy's log as a warning of the logger "redis", not raw lines on stderr.
func TestRedisClientLogsToCaddy(t *testing.T) {
	core, logs := zapobserver.New(zap.WarnLevel)
	redisLogTo.Store(zap.New(core).Named("redis"))
	t.Cleanup(func() { redisLogTo.Store(nil) })

	// An address nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	s := RedisStore{Address: addr, Timeout: caddy.Duration(200 * time.Millisecond)}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	st, err := s.OpenStore(caddy.Context{}, StoreOptions{TTL: time.Minute, CacheSize: 1 << 20, Namespace: "etag||"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, _, err := st.Get(context.Background(), "example.com/a"); err == nil {
		t.Fatal("Get through a dead Redis succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessageSnippet("dial").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	entries := logs.FilterMessageSnippet("dial").All()
	if len(entries) == 0 {
		t.Fatalf("no go-redis dial failure in Caddy's log; got %v", logs.All())
	}
	if e := entries[0]; e.LoggerName != "redis" || strings.HasPrefix(e.Message, "redis: ") || !strings.Contains(e.Message, addr) {
		t.Errorf("logged %q by %q", e.Message, e.LoggerName)
	}
}

// adaptRedisStore adapts a site whose conflict handler has `store redis
// { block }` with the caddyfile adapter (caddy adapt) and returns the
// store's JSON and the store decoded from it.
func adaptRedisStore(t *testing.T, block string) (string, RedisStore) {
	t.Helper()
	input := ":8080 {\n\tconflict {\n\t\tstore redis {\n" + block + "\n\t\t}\n\t}\n\treverse_proxy 127.0.0.1:8081\n}"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatalf("adapt %q: %v", block, err)
	}
	for _, hh := range collectHandlers(mustJSON(t, out)) {
		if hh["handler"] != "conflict" {
			continue
		}
		raw, _ := json.Marshal(hh["store"])
		var s RedisStore
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		return string(raw), s
	}
	t.Fatalf("no conflict handler in %s", out)
	return "", RedisStore{}
}

// TestRedisStoreAdaptTopologies: the topology and TLS sub-directives adapt
// to the JSON names (the TLS ones as reverse_proxy's transport has them).
func TestRedisStoreAdaptTopologies(t *testing.T) {
	for _, tt := range []struct{ block, json string }{
		{"address a:7000 b:7001 c:7002\ncluster",
			`{"addresses":["a:7000","b:7001","c:7002"],"cluster":true,"type":"redis"}`},
		{"address s1:26379 s2:26379\nsentinel mymaster\nsentinel_username sen\nsentinel_password {env.SENTINEL_PASSWORD}\nusername proxy\npassword pw\ndb 1",
			`{"addresses":["s1:26379","s2:26379"],"db":1,"password":"pw","sentinel":"mymaster","sentinel_password":"{env.SENTINEL_PASSWORD}","sentinel_username":"sen","type":"redis","username":"proxy"}`},
		{"url {env.REDIS_URL}", `{"type":"redis","url":"{env.REDIS_URL}"}`},
		{"url rediss://proxy:pw@redis.internal:6380/2\ntls_trust_pool file /etc/redis/ca.pem\ntls_client_auth /etc/redis/client.pem /etc/redis/client-key.pem\ntls_server_name redis.example.com",
			`{"tls":{"ca":{"pem_files":["/etc/redis/ca.pem"],"provider":"file"},"client_certificate_file":"/etc/redis/client.pem","client_certificate_key_file":"/etc/redis/client-key.pem","server_name":"redis.example.com"},"type":"redis","url":"rediss://proxy:pw@redis.internal:6380/2"}`},
		{"address r:6379\ntls {\n trust_pool file ca.pem\n client_auth c.pem k.pem\n insecure_skip_verify\n}",
			`{"address":"r:6379","tls":{"ca":{"pem_files":["ca.pem"],"provider":"file"},"client_certificate_file":"c.pem","client_certificate_key_file":"k.pem","insecure_skip_verify":true},"type":"redis"}`},
		{"address r:6379\ntls_insecure_skip_verify", `{"address":"r:6379","tls":{"insecure_skip_verify":true},"type":"redis"}`},
		{"tls", `{"tls":{},"type":"redis"}`},
	} {
		got, s := adaptRedisStore(t, tt.block)
		if got != tt.json {
			t.Errorf("%q adapts to\n%s\nwant\n%s", tt.block, got, tt.json)
		}
		// Round trip: the JSON decodes to the same and encodes back.
		back, _ := json.Marshal(s)
		var m map[string]any
		_ = json.Unmarshal(back, &m)
		m["type"] = "redis"
		again, _ := json.Marshal(m)
		if string(again) != tt.json {
			t.Errorf("%q: round trip gives %s", tt.block, again)
		}
	}
}

// TestRedisStoreValidate: meanings are checked at provision, each error
// naming its sub-directive.
func TestRedisStoreValidate(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	trust := func(files ...string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"provider": "file", "pem_files": files})
		return b
	}
	for _, tt := range []struct {
		name string
		s    RedisStore
		want string
	}{
		{"short lease", RedisStore{Lease: caddy.Duration(time.Millisecond)}, "lease"},
		{"bad policy", RedisStore{OnStoreError: "drop"}, "on_store_error"},
		{"no port", RedisStore{Address: "localhost"}, "address"},
		{"no port among several", RedisStore{Addresses: []string{"a:1", "b"}, Cluster: true}, "address"},
		{"braces in prefix", RedisStore{KeyPrefix: "shop{1}:"}, "key_prefix"},
		{"url and address", RedisStore{URL: "redis://a:1", Address: "b:1"}, "url"},
		{"url and password", RedisStore{URL: "redis://a:1", Password: "x"}, "url"},
		{"url and db", RedisStore{URL: "redis://a:1", DB: 2}, "url"},
		{"url scheme", RedisStore{URL: "http://a:1"}, "url"},
		{"url query", RedisStore{URL: "redis://a:1/0?dial_timeout=1s"}, "url"},
		{"url db", RedisStore{URL: "redis://a:1/zero"}, "url"},
		{"url from env that is not set", RedisStore{URL: "{env.CONFLICT_TEST_UNSET_URL}"}, "url"},
		{"plain url with tls", RedisStore{URL: "redis://a:1", TLS: &RedisTLS{}}, "tls"},
		{"cluster and sentinel", RedisStore{Addresses: []string{"a:1", "b:1"}, Cluster: true, Sentinel: "m"}, "cluster"},
		{"cluster without address", RedisStore{Cluster: true}, "cluster"},
		{"cluster db", RedisStore{Address: "a:1", Cluster: true, DB: 1}, "db"},
		{"sentinel without address", RedisStore{Sentinel: "m"}, "sentinel: needs address"},
		{"sentinel with url", RedisStore{Sentinel: "m", URL: "redis://a:1"}, "sentinel"},
		{"sentinel password alone", RedisStore{Address: "a:1", SentinelPassword: "x"}, "sentinel_password"},
		{"several addresses, no topology", RedisStore{Addresses: []string{"a:1", "b:1"}}, "address"},
		{"address and addresses", RedisStore{Address: "a:1", Addresses: []string{"b:1", "c:1"}, Cluster: true}, "address"},
		{"certificate without key", RedisStore{TLS: &RedisTLS{ClientCertificateFile: "c.pem"}}, "tls_client_auth"},
		{"missing key file", RedisStore{TLS: &RedisTLS{ClientCertificateFile: garbage, ClientCertificateKeyFile: filepath.Join(dir, "none.pem")}}, "tls_client_auth"},
		{"missing CA file", RedisStore{TLS: &RedisTLS{CARaw: trust(filepath.Join(dir, "none.pem"))}}, "tls_trust_pool"},
		{"CA file without a certificate", RedisStore{TLS: &RedisTLS{CARaw: trust(garbage)}}, "tls_trust_pool"},
	} {
		s := tt.s
		err := s.Provision(ctx)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "redis: ") {
			t.Errorf("%s: error %v, want one naming %q", tt.name, err, tt.want)
		} else if strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: error %v shows a password", tt.name, err)
		}
	}

	// What passes: a url from the environment, a cluster seed from a url.
	t.Setenv("CONFLICT_TEST_REDIS_URL", "rediss://proxy:s3cret@redis.internal:6380/4")
	s := RedisStore{URL: "{env.CONFLICT_TEST_REDIS_URL}"}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if c := s.conn; c.Addr != "redis.internal:6380" || c.Username != "proxy" || c.Password != "s3cret" || c.DB != 4 ||
		c.TLS == nil || len(c.Addrs) != 0 {
		t.Errorf("url provisioned %+v", c)
	}
	if strings.Contains(s.PoolKey(StoreOptions{}), "s3cret") {
		t.Error("the pool key holds the url's password")
	}
	s = RedisStore{URL: "redis://seed:7000", Cluster: true}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	s = RedisStore{Addresses: []string{"s1:26379", "s2:26379"}, Sentinel: "mymaster"}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if c := s.conn; c.MasterName != "mymaster" || len(c.Addrs) != 2 {
		t.Errorf("sentinel provisioned %+v", c)
	}
}

// TestRedisStoreTLSEndToEnd provisions `store redis` with a rediss:// url,
// tls_trust_pool file and tls_client_auth against a TLS-only redis-server,
// and writes through it; a store trusting another CA cannot connect.
func TestRedisStoreTLSEndToEnd(t *testing.T) {
	srv := backends.StartRedisTLS(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	open := func(caFile string) versioncache.Store {
		t.Helper()
		_, s := adaptRedisStore(t, fmt.Sprintf("url rediss://%s/1\ntls_trust_pool file %s\ntls_client_auth %s %s\ntimeout 500ms",
			srv.Addr(), caFile, srv.Certs.ClientCertFile, srv.Certs.ClientKeyFile))
		if err := s.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if s.conn.TLS == nil || s.conn.TLS.RootCAs == nil || len(s.conn.TLS.Certificates) != 1 {
			t.Fatalf("TLS not provisioned: %+v", s.conn.TLS)
		}
		st, err := s.OpenStore(ctx, StoreOptions{TTL: time.Minute, CacheSize: 1 << 20, Namespace: "etag||"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	st := open(srv.Certs.CAFile)
	l, _, err := st.Claim(context.Background(), "example.com/tls", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(context.Background(), conflict.State{Version: `"t1"`}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := st.Get(context.Background(), "example.com/tls"); err != nil || !ok || got.Version != `"t1"` {
		t.Fatalf("Get = %+v %v %v", got, ok, err)
	}

	other := backends.NewTestCerts(t)
	_, _, err = open(other.CAFile).Get(context.Background(), "example.com/tls")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("a store trusting another CA: %v", err)
	}
}
