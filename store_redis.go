package caddyconflict

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
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

// RedisStore is the version table shared by several Caddy nodes through
// Redis (5.0 or later): a standalone server or a primary endpoint, a Redis
// Cluster (cluster), or a primary found through Redis Sentinel (sentinel).
// Versions, superseded lists, tombstones and per-key write claims live in
// Redis; each write's check-and-claim is one Lua script, and a claim's
// lease frees the key of a node that died mid-write. Every key of a table
// carries one Redis Cluster hash tag, {<key_prefix><version source>}, so
// that a table's scripts stay in one slot of a Cluster (keyPrefix).
//
// The client is github.com/redis/go-redis/v9: the Redis client of the Caddy
// ecosystem (caddy-storage-redis), with EVALSHA script caching, pub/sub
// that resubscribes after a reconnect, Cluster and Sentinel clients, TLS
// and ACL users; rueidis's strengths (auto-pipelining, server-assisted
// client-side caching) buy little here, where the read path costs no round
// trip by design.
type RedisStore struct {
	// Address is host:port of the Redis server (default 127.0.0.1:6379),
	// or of the first seed or sentinel. Placeholders such as
	// {env.REDIS_ADDRESS} are replaced.
	Address string `json:"address,omitempty"`
	// Addresses lists several host:port (instead of Address): the seed
	// nodes of a Cluster, or the sentinels. Placeholders are replaced.
	Addresses []string `json:"addresses,omitempty"`
	// URL is redis://user:password@host:port/db or rediss://... (TLS),
	// instead of address, username, password and db (read by go-redis's
	// redis.ParseURL; no query options). Placeholders such as
	// {env.REDIS_URL} are replaced.
	URL string `json:"url,omitempty"`
	// Cluster connects to a Redis Cluster; the addresses are seeds.
	Cluster bool `json:"cluster,omitempty"`
	// Sentinel is the master name Redis Sentinel monitors the primary
	// under; the addresses are then the sentinels.
	Sentinel string `json:"sentinel,omitempty"`
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (username and password are for the data nodes). Placeholders are
	// replaced.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// Username and Password authenticate (ACL user, or AUTH password
	// alone). Placeholders are replaced.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the database number (0 in a Cluster).
	DB int `json:"db,omitempty"`
	// TLS, when present, connects with TLS (a rediss:// url does too).
	TLS *RedisTLS `json:"tls,omitempty"`
	// KeyPrefix starts every key this handler stores. Default
	// "caddy-conflict:"; the version source is appended, so handlers
	// reading versions differently never share keys, and the two are
	// wrapped in a hash tag: {caddy-conflict:etag}:<key>. It must not
	// contain { or }.
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

	// Set by Provision: the connection settings every table shares, and
	// what identifies the TLS settings in PoolKey.
	conn   versioncache.RedisConfig
	tlsKey string
}

// RedisTLS configures TLS to Redis, with the names of reverse_proxy's HTTP
// transport (Caddyfile: tls_trust_pool, tls_client_auth, tls_server_name,
// tls_insecure_skip_verify).
type RedisTLS struct {
	// CARaw is the pool of trusted CA certificates, a tls.ca_pool.source
	// module (file, inline, pki_root, ...). Default: the system's roots.
	CARaw json.RawMessage `json:"ca,omitempty" caddy:"namespace=tls.ca_pool.source inline_key=provider"`
	// ClientCertificateFile and ClientCertificateKeyFile are PEM files of
	// a client certificate and its key to present to Redis.
	ClientCertificateFile    string `json:"client_certificate_file,omitempty"`
	ClientCertificateKeyFile string `json:"client_certificate_key_file,omitempty"`
	// ServerName overrides the name checked in Redis's certificate
	// (default: the host of each address).
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

// addrs are the configured addresses: Addresses, or Address alone.
func (s *RedisStore) addrs() []string {
	if len(s.Addresses) > 0 {
		return s.Addresses
	}
	if s.Address != "" {
		return []string{s.Address}
	}
	return nil
}

// Provision sets the defaults, replaces placeholders, and loads the TLS
// settings (trusted CAs, client certificate).
func (s *RedisStore) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	// An address or url that a placeholder left empty is an error, not
	// the default address.
	replace := func(name, v string) (string, error) {
		r := repl.ReplaceKnown(v, "")
		if v != "" && r == "" {
			return "", fmt.Errorf("redis: %s: %s is empty", name, v)
		}
		return r, nil
	}
	var err error
	if s.Address, err = replace("address", s.Address); err != nil {
		return err
	}
	for i, a := range s.Addresses {
		if s.Addresses[i], err = replace("address", a); err != nil {
			return err
		}
	}
	if s.URL, err = replace("url", s.URL); err != nil {
		return err
	}
	s.Username = repl.ReplaceKnown(s.Username, "")
	s.Password = repl.ReplaceKnown(s.Password, "")
	s.SentinelUsername = repl.ReplaceKnown(s.SentinelUsername, "")
	s.SentinelPassword = repl.ReplaceKnown(s.SentinelPassword, "")
	if len(s.addrs()) == 0 && s.URL == "" && !s.Cluster && s.Sentinel == "" {
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
	if err := s.Validate(); err != nil {
		return err
	}
	c := versioncache.RedisConfig{
		Addrs:            s.addrs(),
		Cluster:          s.Cluster,
		MasterName:       s.Sentinel,
		SentinelUsername: s.SentinelUsername,
		SentinelPassword: s.SentinelPassword,
		Username:         s.Username,
		Password:         s.Password,
		DB:               s.DB,
	}
	if s.TLS != nil {
		if s.tlsKey, c.TLS, err = s.TLS.config(ctx); err != nil {
			return err
		}
	}
	if s.URL != "" {
		if err := c.ApplyURL(s.URL); err != nil {
			return fmt.Errorf("redis: url: %v", strings.TrimPrefix(err.Error(), "versioncache: redis: url: "))
		}
		c.Addrs = nil
	}
	s.conn = c
	return nil
}

// config builds the TLS configuration; key identifies it (PoolKey).
func (t *RedisTLS) config(ctx caddy.Context) (key string, cfg *tls.Config, err error) {
	key = fmt.Sprintf("tls|%s|%s|%s|%s|%t", t.CARaw, t.ClientCertificateFile, t.ClientCertificateKeyFile,
		t.ServerName, t.InsecureSkipVerify)
	cfg = &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CARaw != nil {
		m, err := ctx.LoadModule(t, "CARaw")
		if err != nil {
			return "", nil, fmt.Errorf("redis: tls_trust_pool: %v", err)
		}
		ca, ok := m.(caddytls.CA)
		if !ok {
			return "", nil, fmt.Errorf("redis: tls_trust_pool: module %T is not a certificate pool", m)
		}
		pool := ca.CertPool()
		if pool == nil || pool.Equal(x509.NewCertPool()) {
			return "", nil, errors.New("redis: tls_trust_pool: no CA certificate found (a PEM file without a CERTIFICATE block?)")
		}
		cfg.RootCAs = pool
	}
	if t.ClientCertificateFile != "" || t.ClientCertificateKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.ClientCertificateFile, t.ClientCertificateKeyFile)
		if err != nil {
			return "", nil, fmt.Errorf("redis: tls_client_auth: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return key, cfg, nil
}

// Validate checks the configuration; each error names the sub-directive.
// Values with placeholders are checked once Provision replaced them.
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
	case strings.ContainsAny(s.KeyPrefix, "{}"):
		return fmt.Errorf("redis: key_prefix: must not contain { or } (the store adds its own hash tag), got %q", s.KeyPrefix)
	case s.Address != "" && len(s.Addresses) > 0:
		return errors.New("redis: address: give address or addresses, not both")
	case s.Cluster && s.Sentinel != "":
		return errors.New("redis: cluster: excludes sentinel (a Cluster has no sentinels)")
	case s.Cluster && s.DB != 0:
		return fmt.Errorf("redis: db: a Redis Cluster has database 0 only, got %d", s.DB)
	case s.Sentinel != "" && s.URL != "":
		return errors.New("redis: sentinel: list the sentinels with address, not url")
	case s.Sentinel != "" && len(s.addrs()) == 0:
		return errors.New("redis: sentinel: needs address: the sentinels' host:port")
	case s.Cluster && len(s.addrs()) == 0 && s.URL == "":
		return errors.New("redis: cluster: needs address (seed nodes) or url")
	case (s.SentinelUsername != "" || s.SentinelPassword != "") && s.Sentinel == "":
		return errors.New("redis: sentinel_username, sentinel_password: only with sentinel")
	case !s.Cluster && s.Sentinel == "" && len(s.addrs()) > 1:
		return fmt.Errorf("redis: address: %d addresses need cluster (seeds) or sentinel (sentinels)", len(s.addrs()))
	}
	if s.URL != "" {
		switch {
		case len(s.addrs()) > 0:
			return errors.New("redis: url: replaces address; give one of them")
		case s.Username != "" || s.Password != "":
			return errors.New("redis: url: carries username and password (redis://user:pass@host:port); remove username and password")
		case s.DB != 0:
			return errors.New("redis: url: carries the database (redis://host:port/db); remove db")
		case strings.Contains(s.URL, "{"):
			// a placeholder: checked once replaced
		case !strings.HasPrefix(s.URL, "redis://") && !strings.HasPrefix(s.URL, "rediss://"):
			return errors.New("redis: url: want redis://... or rediss://...")
		case s.TLS != nil && strings.HasPrefix(s.URL, "redis://"):
			return errors.New("redis: tls: the url is redis:// (plain); use rediss:// for TLS")
		}
	}
	for _, a := range s.addrs() {
		if a != "" && !strings.Contains(a, "{") {
			if i := strings.LastIndexByte(a, ':'); i <= 0 || i == len(a)-1 {
				return fmt.Errorf("redis: address: want host:port, got %q", a)
			}
		}
	}
	if t := s.TLS; t != nil && (t.ClientCertificateFile == "") != (t.ClientCertificateKeyFile == "") {
		return errors.New("redis: tls_client_auth: needs a certificate file and its key file")
	}
	return nil
}

// RejectOnError implements StoreErrorPolicy.
func (s RedisStore) RejectOnError() bool { return s.OnStoreError != "forward" }

// PoolKey implements StoreModule: one client per topology, server,
// database, key space and setting.
func (s RedisStore) PoolKey(o StoreOptions) string {
	secret := sha256.Sum256([]byte(s.Username + "\x00" + s.Password + "\x00" + s.URL + "\x00" +
		s.SentinelUsername + "\x00" + s.SentinelPassword))
	tlsMode := "plain"
	if s.TLS != nil {
		tlsMode = s.tlsKey
		if tlsMode == "" { // not provisioned
			tlsMode = fmt.Sprintf("tls|%s|%s|%s|%s|%t", s.TLS.CARaw, s.TLS.ClientCertificateFile,
				s.TLS.ClientCertificateKeyFile, s.TLS.ServerName, s.TLS.InsecureSkipVerify)
		}
	}
	return fmt.Sprintf("redis|%s|%t|%s|%d|%s|%s|%s|%x|%d|%s|%s|%s|%s", strings.Join(s.addrs(), ","), s.Cluster, s.Sentinel,
		s.DB, s.keyPrefix(o.Namespace), o.TTL, o.Namespace, secret[:8], o.CacheSize, tlsMode, time.Duration(s.Timeout),
		time.Duration(s.Lease), time.Duration(s.NearCache))
}

// keyPrefix is key_prefix followed by the version source, so that handlers
// with different sources never read each other's versions (etag, hash,
// last_modified, or header-/json- with a digest of the field or pointer),
// as a Redis Cluster hash tag: {caddy-conflict:etag}:. Every key of the
// table (its hashes, key index and the store's other keys, all built from
// this prefix) is then in one slot, as a Cluster needs for the table's
// scripts, and tables with different prefixes or sources hash apart. The
// same form serves every topology.
func (s RedisStore) keyPrefix(namespace string) string {
	source, rest, _ := strings.Cut(namespace, "|")
	if strings.Trim(rest, "|") != "" {
		sum := sha256.Sum256([]byte(rest))
		source += "-" + hex.EncodeToString(sum[:4])
	}
	return "{" + s.KeyPrefix + source + "}:"
}

// OpenStore implements StoreModule. Redis need not be up: the store
// connects on use and applies on_store_error meanwhile.
func (s RedisStore) OpenStore(ctx caddy.Context, o StoreOptions) (versioncache.Store, error) {
	cfg := s.conn
	cfg.Addrs = slices.Clone(cfg.Addrs)
	cfg.KeyPrefix = s.keyPrefix(o.Namespace)
	cfg.Timeout = time.Duration(s.Timeout)
	cfg.Lease = time.Duration(s.Lease)
	cfg.TTL = o.TTL
	cfg.NearBytes = o.CacheSize
	cfg.NearCache = time.Duration(s.NearCache)
	if cfg.Addr == "" && len(cfg.Addrs) == 0 {
		return nil, errors.New("redis: not provisioned")
	}
	redisLogOnce.Do(func() { redis.SetLogger(redisLog{}) })
	r, err := versioncache.NewRedis(cfg)
	if err != nil {
		return nil, err
	}
	logger := ctx.Logger()
	endpoint := zap.Strings("address", s.addrs())
	if s.URL != "" {
		endpoint = zap.String("address", cfg.Addr)
	}
	go func() {
		// Advice only: Caddy starts whether Redis answers or not.
		c, cancel := context.WithTimeout(context.Background(), cfg.Timeout+time.Second)
		defer cancel()
		if err := r.Ping(c); errors.Is(err, versioncache.ErrClosed) {
			return // caddy validate, or a config replaced at once
		} else if err != nil {
			logger.Warn("redis version store not reachable yet; writes get on_store_error until it is",
				endpoint, zap.String("on_store_error", s.OnStoreError), zap.Error(err))
			return
		}
		if p, err := r.EvictionPolicy(c); err == nil && p != "noeviction" && p != "" {
			logger.Warn("Redis may evict version keys (maxmemory-policy "+p+"): an evicted key's writes are forwarded unchecked; use noeviction",
				endpoint)
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

// Interface guards
var (
	_ StoreModule           = RedisStore{}
	_ StoreErrorPolicy      = RedisStore{}
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.Validator       = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)
