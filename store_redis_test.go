package caddyconflict

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	zapobserver "go.uber.org/zap/zaptest/observer"
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
		{"lease 1ms", "lease"},
		{"lease", "lease"},
		{"near_cache 0s", "near_cache"},
		{"on_store_error drop", "on_store_error"},
		{"address localhost", "address"},
		{"tls yes", "tls"},
		{"tls {\n verify \n}", "tls"},
		{"frobnicate 1", "frobnicate"},
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
	if p := s.keyPrefix(etag.Namespace); p != "caddy-conflict:etag:" {
		t.Errorf("etag prefix %q", p)
	}
	if a, b := s.keyPrefix(jsonA.Namespace), s.keyPrefix(jsonB.Namespace); a == b || !strings.HasPrefix(a, "caddy-conflict:json-") {
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
