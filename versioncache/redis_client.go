package versioncache

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// The topologies of the Redis store. Every one gets the same client
// settings (timeouts, one dial per attempt, one retry, RESP2, no handshake
// extras) and the same round-trip counter; only the client type differs:
//
//   - standalone (or a primary endpoint): redis.NewClient on Addrs[0];
//   - Redis Cluster (Cluster): redis.NewClusterClient with Addrs as seeds;
//   - Sentinel (MasterName): redis.NewFailoverClient, Addrs the sentinels.
//
// In a Cluster every key a script touches must be in one hash slot: the
// KeyPrefix of a table must carry a hash tag ("{...}"), which puts the
// table's hashes, its key index, the index's sweep cursor and any other key
// built from KeyPrefix in the slot of that tag. (Pub/Sub channels are
// cluster-wide: SUBSCRIBE and PUBLISH work on any node.)

// addrs returns the configured addresses: Addrs, or Addr alone.
func (cfg *RedisConfig) addrs() []string {
	if len(cfg.Addrs) > 0 {
		return cfg.Addrs
	}
	if cfg.Addr != "" {
		return []string{cfg.Addr}
	}
	return nil
}

// endpoint names the store's Redis in errors: the address, or the first
// seed or sentinel with the topology.
func (cfg *RedisConfig) endpoint() string {
	a := cfg.addrs()
	switch {
	case len(a) == 0:
		return ""
	case cfg.MasterName != "":
		return "sentinel " + cfg.MasterName + " via " + strings.Join(a, ",")
	case cfg.Cluster:
		return "cluster " + strings.Join(a, ",")
	default:
		return strings.Join(a, ",")
	}
}

// HashTag returns the hash tag of a Redis key as Redis Cluster reads it:
// what lies between the first "{" and the first "}" after it, if that is
// not empty; ok is false when the key has none (its whole name is hashed).
func HashTag(key string) (tag string, ok bool) {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return "", false
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return "", false
	}
	return key[i+1 : i+1+j], true
}

// checkTopology checks the addresses and the topology of cfg.
func (cfg *RedisConfig) checkTopology() error {
	a := cfg.addrs()
	switch {
	case len(a) == 0:
		return errors.New("versioncache: redis: no address")
	case cfg.Cluster && cfg.MasterName != "":
		return errors.New("versioncache: redis: Cluster and MasterName (Sentinel) exclude each other")
	case cfg.Cluster && cfg.DB != 0:
		return fmt.Errorf("versioncache: redis: a Redis Cluster has database 0 only, not %d", cfg.DB)
	case !cfg.Cluster && cfg.MasterName == "" && len(a) > 1:
		return fmt.Errorf("versioncache: redis: %d addresses but neither Cluster nor Sentinel", len(a))
	}
	if cfg.Cluster {
		// A prefix without a tag spreads a table over every slot: each
		// script would fail with CROSSSLOT.
		if _, ok := HashTag(cfg.KeyPrefix); !ok {
			return fmt.Errorf("versioncache: redis: in a Cluster, KeyPrefix %q needs a hash tag such as {table}", cfg.KeyPrefix)
		}
	}
	return nil
}

// newRedisClient builds the go-redis client of cfg's topology, with the
// store's settings and the round-trip counter h. cfg has its defaults.
func newRedisClient(cfg *RedisConfig, h redis.Hook) (redis.UniversalClient, error) {
	if err := cfg.checkTopology(); err != nil {
		return nil, err
	}
	addrs := cfg.addrs()
	// One set of options for every topology, through go-redis's universal
	// client (a Sentinel failover client for MasterName, a Cluster client
	// for Cluster, else a plain client):
	//
	//   - DialTimeout, ReadTimeout, WriteTimeout: cfg.Timeout.
	//   - DialerRetries 1: a Redis that is down fails the call at once
	//     (go-redis would dial five times).
	//   - ContextTimeoutEnabled: request contexts bound the calls too (a
	//     client that went away).
	//   - MaxRetries 1: one retry survives a connection Redis closed (a
	//     restart, a failover); every script is idempotent, so a retry
	//     after a lost reply is safe. A Cluster's redirections (MOVED/ASK
	//     while slots move) are followed apart, up to go-redis's 3.
	//   - Protocol 2, DisableIdentity and no maintenance notifications:
	//     works with Redis 5+, Valkey and managed Redis, and keeps go-redis
	//     from logging refusals (a failover client has none anyway).
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                    addrs,
		IsClusterMode:            cfg.Cluster,
		MasterName:               cfg.MasterName,
		SentinelUsername:         cfg.SentinelUsername,
		SentinelPassword:         cfg.SentinelPassword,
		Username:                 cfg.Username,
		Password:                 cfg.Password,
		DB:                       cfg.DB,
		TLSConfig:                cfg.TLS,
		ClientName:               "caddy-conflict",
		DialTimeout:              cfg.Timeout,
		DialerRetries:            1,
		ReadTimeout:              cfg.Timeout,
		WriteTimeout:             cfg.Timeout,
		ContextTimeoutEnabled:    true,
		MaxRetries:               1,
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	c.AddHook(h)
	return c, nil
}

// ApplyURL sets Addr, Username, Password, DB and, for rediss://, TLS
// from a redis:// or rediss:// URL (redis://user:pass@host:port/db), read
// by go-redis's redis.ParseURL. A TLS configuration already set is kept
// (the caller's trusted CAs, client certificate); rediss:// without one
// gets the system's roots. Query options are refused: the store's own
// settings (timeouts, retries, pool) apply to every topology.
func (cfg *RedisConfig) ApplyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("versioncache: redis: url: %w", redactURLError(err))
	}
	if u.RawQuery != "" {
		return fmt.Errorf("versioncache: redis: url: query options (?%s) are not supported: use the store's settings", u.RawQuery)
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return fmt.Errorf("versioncache: redis: url: %w", err)
	}
	cfg.Addr, cfg.Username, cfg.Password, cfg.DB = o.Addr, o.Username, o.Password, o.DB
	if o.TLSConfig != nil && cfg.TLS == nil {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return nil
}

// redactURLError keeps a password out of url.Parse's error, which quotes
// the URL.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
