package caddyconflict

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// Defaults of `store redis`.
const (
	DefaultRedisAddress = "127.0.0.1:6379"
)

// RedisStore is the version table shared by several Caddy nodes through one
// Redis server (5.0 or later; standalone or a primary endpoint, not Redis
// Cluster). Versions, superseded lists, tombstones and per-key write claims
// live in Redis; each write's check-and-claim is one Lua script, and a
// claim's lease frees the key of a node that died mid-write.
//
// The client is github.com/redis/go-redis/v9: the Redis client of the Caddy
// ecosystem (caddy-storage-redis), with EVALSHA script caching, pub/sub
// that resubscribes after a reconnect, TLS and ACL users; rueidis's
// strengths (auto-pipelining, server-assisted client-side caching) buy
// little here, where the read path costs no round trip by design.
type RedisStore struct {
	// Address is host:port of the Redis server. Default 127.0.0.1:6379.
	// Placeholders such as {env.REDIS_ADDRESS} are replaced.
	Address string `json:"address,omitempty"`
	// Username and Password authenticate (ACL user, or AUTH password
	// alone). Placeholders are replaced.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the database number.
	DB int `json:"db,omitempty"`
	// TLS, when present, connects with TLS.
	TLS *RedisTLS `json:"tls,omitempty"`
	// KeyPrefix starts every key this handler stores. Default
	// "caddy-conflict:"; the version source is appended, so handlers
	// reading versions differently never share keys.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Timeout bounds dialing and each read and write. Default 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Lease is how long a write claim outlives the node holding it (a live
	// node renews it every lease/3 while the upstream write is in flight).
	// After a node dies mid-write, its keys are writable again after at
	// most the lease, and uncertain (re-read first). Default 10s.
	Lease caddy.Duration `json:"lease,omitempty"`
	// NearCache is how long a node's own copy of a key's state may answer
	// for Redis on the read path, so that a read that saw what the node
	// knows costs no round trip. Default 1s; negative (Caddyfile: off)
	// asks Redis for every read.
	NearCache caddy.Duration `json:"near_cache,omitempty"`
	// OnStoreError is what a write gets while Redis cannot be reached:
	// "reject" (default: 503 store-unavailable with Retry-After) or
	// "forward" (passes unchecked, counted in
	// caddy_conflict_store_errors_total). Reads always pass.
	OnStoreError string `json:"on_store_error,omitempty"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// ServerName overrides the name checked in Redis's certificate
	// (default: the address's host).
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any certificate (testing only).
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.conflict.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision sets the defaults and replaces placeholders.
func (s *RedisStore) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	s.Address = repl.ReplaceKnown(s.Address, "")
	s.Username = repl.ReplaceKnown(s.Username, "")
	s.Password = repl.ReplaceKnown(s.Password, "")
	if s.Address == "" {
		s.Address = DefaultRedisAddress
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = versioncache.DefaultRedisPrefix
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(versioncache.DefaultRedisTimeout)
	}
	if s.Lease == 0 {
		s.Lease = caddy.Duration(versioncache.DefaultRedisLease)
	}
	if s.OnStoreError == "" {
		s.OnStoreError = "reject"
	}
	return s.Validate()
}

// Validate checks the configuration; each error names the sub-directive.
func (s *RedisStore) Validate() error {
	switch {
	case s.DB < 0:
		return fmt.Errorf("redis: db: must not be negative, got %d", s.DB)
	case s.Timeout < 0:
		return fmt.Errorf("redis: timeout: must not be negative")
	case s.Lease < 0 || (s.Lease > 0 && time.Duration(s.Lease) < 100*time.Millisecond):
		return fmt.Errorf("redis: lease: must be at least 100ms, got %s", time.Duration(s.Lease))
	case s.OnStoreError != "" && s.OnStoreError != "reject" && s.OnStoreError != "forward":
		return fmt.Errorf("redis: on_store_error: must be reject or forward, got %q", s.OnStoreError)
	}
	if s.Address != "" && !strings.Contains(s.Address, "{") {
		if i := strings.LastIndexByte(s.Address, ':'); i <= 0 || i == len(s.Address)-1 {
			return fmt.Errorf("redis: address: want host:port, got %q", s.Address)
		}
	}
	return nil
}

// RejectOnError implements StoreErrorPolicy.
func (s RedisStore) RejectOnError() bool { return s.OnStoreError != "forward" }

// PoolKey implements StoreModule: one client per server, database, key
// space and setting.
func (s RedisStore) PoolKey(o StoreOptions) string {
	secret := sha256.Sum256([]byte(s.Username + "\x00" + s.Password))
	tlsMode := "plain"
	if s.TLS != nil {
		tlsMode = fmt.Sprintf("tls:%s:%t", s.TLS.ServerName, s.TLS.InsecureSkipVerify)
	}
	return fmt.Sprintf("redis|%s|%d|%s|%s|%s|%x|%d|%s|%s|%s|%s", s.Address, s.DB, s.keyPrefix(o.Namespace), o.TTL,
		o.Namespace, secret[:8], o.CacheSize, tlsMode, time.Duration(s.Timeout), time.Duration(s.Lease),
		time.Duration(s.NearCache))
}

// keyPrefix is key_prefix followed by the version source, so that handlers
// with different sources never read each other's versions: etag, hash,
// last_modified, or header-/json- with a digest of the field or pointer.
func (s RedisStore) keyPrefix(namespace string) string {
	source, rest, _ := strings.Cut(namespace, "|")
	if strings.Trim(rest, "|") != "" {
		sum := sha256.Sum256([]byte(rest))
		source += "-" + hex.EncodeToString(sum[:4])
	}
	return s.KeyPrefix + source + ":"
}

// OpenStore implements StoreModule. Redis need not be up: the store
// connects on use and applies on_store_error meanwhile.
func (s RedisStore) OpenStore(ctx caddy.Context, o StoreOptions) (versioncache.Store, error) {
	cfg := versioncache.RedisConfig{
		Addr:      s.Address,
		Username:  s.Username,
		Password:  s.Password,
		DB:        s.DB,
		KeyPrefix: s.keyPrefix(o.Namespace),
		Timeout:   time.Duration(s.Timeout),
		Lease:     time.Duration(s.Lease),
		TTL:       o.TTL,
		NearBytes: o.CacheSize,
		NearCache: time.Duration(s.NearCache),
	}
	if s.TLS != nil {
		host := s.TLS.ServerName
		if host == "" {
			host = s.Address[:max(strings.LastIndexByte(s.Address, ':'), 0)]
		}
		cfg.TLS = &tls.Config{ServerName: host, InsecureSkipVerify: s.TLS.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	}
	redisLogOnce.Do(func() { redis.SetLogger(redisLog{}) })
	r, err := versioncache.NewRedis(cfg)
	if err != nil {
		return nil, err
	}
	logger := ctx.Logger()
	go func() {
		// Advice only: Caddy starts whether Redis answers or not.
		c, cancel := context.WithTimeout(context.Background(), cfg.Timeout+time.Second)
		defer cancel()
		if err := r.Ping(c); errors.Is(err, versioncache.ErrClosed) {
			return // caddy validate, or a config replaced at once
		} else if err != nil {
			logger.Warn("redis version store not reachable yet; writes get on_store_error until it is",
				zap.String("address", s.Address), zap.String("on_store_error", s.OnStoreError), zap.Error(err))
			return
		}
		if p, err := r.EvictionPolicy(c); err == nil && p != "noeviction" && p != "" {
			logger.Warn("Redis may evict version keys (maxmemory-policy "+p+"): an evicted key's writes are forwarded unchecked; use noeviction",
				zap.String("address", s.Address))
		}
	}()
	return r, nil
}

// redisLog takes go-redis's own messages (a failed dial, a connection
// dropped from the pool) to Caddy's log, as warnings of the logger "redis",
// instead of go-redis's default: unstructured lines on stderr. go-redis has
// one logger per process; the first Redis store opened sets it.
type redisLog struct{}

var (
	redisLogOnce sync.Once
	// redisLogTo, if set, is where redisLog writes instead (tests).
	redisLogTo atomic.Pointer[zap.Logger]
)

func (redisLog) Printf(_ context.Context, format string, v ...any) {
	l := redisLogTo.Load()
	if l == nil {
		l = caddy.Log().Named("redis")
	}
	l.Warn(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store redis {
//	    address        <host:port>          # default 127.0.0.1:6379
//	    username       <user>
//	    password       <password>           # placeholders such as {env.REDIS_PASSWORD} work
//	    db             <number>             # default 0
//	    tls                                  # or: tls { server_name <name>; insecure_skip_verify }
//	    key_prefix     <prefix>             # default caddy-conflict:
//	    timeout        <duration>           # dial, read and write; default 2s
//	    lease          <duration>           # default 10s
//	    near_cache     <duration> | off     # default 1s
//	    on_store_error reject | forward     # default reject
//	}
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "redis"
	if d.NextArg() {
		return d.Errf("redis: options go in a block: store redis { address %s }", d.Val())
	}
	for d.NextBlock(0) {
		name := d.Val()
		if name == "tls" {
			s.TLS = &RedisTLS{}
			if d.NextArg() {
				return d.Errf("redis: tls: takes a block, not %q", d.Val())
			}
			for d.NextBlock(1) {
				switch d.Val() {
				case "server_name":
					if !d.NextArg() {
						return d.Errf("redis: tls: server_name needs a name")
					}
					s.TLS.ServerName = d.Val()
				case "insecure_skip_verify":
					s.TLS.InsecureSkipVerify = true
				default:
					return d.Errf("redis: tls: unknown option %q (server_name, insecure_skip_verify)", d.Val())
				}
				if d.NextArg() {
					return d.Errf("redis: tls: too many arguments")
				}
			}
			continue
		}
		args := d.RemainingArgs()
		if len(args) != 1 {
			return d.Errf("redis: %s: expected 1 argument, got %d", name, len(args))
		}
		arg := args[0]
		duration := func() (caddy.Duration, error) {
			v, err := caddy.ParseDuration(arg)
			if err != nil {
				return 0, d.Errf("redis: %s: %v", name, err)
			}
			return caddy.Duration(v), nil
		}
		var err error
		switch name {
		case "address":
			s.Address = arg
		case "username":
			s.Username = arg
		case "password":
			s.Password = arg
		case "db":
			if s.DB, err = strconv.Atoi(arg); err != nil || s.DB < 0 {
				return d.Errf("redis: db: want a database number, got %q", arg)
			}
		case "key_prefix":
			s.KeyPrefix = arg
		case "timeout":
			s.Timeout, err = duration()
		case "lease":
			s.Lease, err = duration()
		case "near_cache":
			if arg == "off" {
				s.NearCache = -1
			} else if s.NearCache, err = duration(); err == nil && s.NearCache <= 0 {
				return d.Errf("redis: near_cache: want a positive duration or off, got %q", arg)
			}
		case "on_store_error":
			s.OnStoreError = arg
		default:
			return d.Errf("redis: unknown option %q", name)
		}
		if err != nil {
			return err
		}
	}
	if err := s.Validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// Interface guards
var (
	_ StoreModule           = RedisStore{}
	_ StoreErrorPolicy      = RedisStore{}
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.Validator       = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)
