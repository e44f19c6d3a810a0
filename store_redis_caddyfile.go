package caddyconflict

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

// The Caddyfile syntax of `store redis` (its meaning is checked in Validate, store_redis.go).

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. It checks
// the syntax (arguments, numbers, durations; a sub-directive given twice);
// what the values mean is checked by Validate. Syntax:
//
//	store redis {
//	    address        <host:port> [<host:port>...]  # default 127.0.0.1:6379; several: cluster seeds or sentinels
//	    url            redis[s]://[user:password@]host:port[/db]  # instead of address, username, password, db
//	    cluster                              # Redis Cluster; address lists seed nodes
//	    sentinel       <master_name>         # Redis Sentinel; address lists the sentinels
//	    sentinel_username <user>
//	    sentinel_password <password>
//	    username       <user>
//	    password       <password>           # placeholders such as {env.REDIS_PASSWORD} work
//	    db             <number>             # default 0
//	    tls                                  # TLS with the system's roots; implied by any tls_* and by rediss://
//	    tls_trust_pool <source> [...]        # trusted CAs, a tls.ca_pool.source module: tls_trust_pool file ca.pem
//	    tls_client_auth <cert_file> <key_file>
//	    tls_server_name <name>
//	    tls_insecure_skip_verify
//	    key_prefix     <prefix>             # default caddy-conflict:
//	    timeout        <duration>           # dial, read and write; default 2s
//	    lease          <duration>           # default 10s
//	    near_cache     <duration> | off     # default 1s
//	    on_store_error reject | forward     # default reject
//	}
//
// The tls_* settings may also go in a block, without their tls_ prefix:
// tls { trust_pool file ca.pem; client_auth c.pem k.pem; server_name n; insecure_skip_verify }.
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "redis"
	if d.NextArg() {
		return d.Errf("redis: options go in a block: store redis { address %s }", d.Val())
	}
	seen := make(map[string]bool)
	once := func(name string) error {
		if seen[name] {
			return d.Errf("redis: %s: given twice; give it once", name)
		}
		seen[name] = true
		return nil
	}
	for d.NextBlock(0) {
		name := d.Val()
		if err := once(name); err != nil {
			return err
		}
		if name == "tls" {
			if s.TLS == nil {
				s.TLS = &RedisTLS{}
			}
			if d.NextArg() {
				return d.Errf("redis: tls: takes a block, not %q", d.Val())
			}
			for d.NextBlock(1) {
				opt := d.Val()
				if !strings.HasPrefix(opt, "tls_") {
					opt = "tls_" + opt
				}
				switch opt {
				case "tls_trust_pool", "tls_client_auth", "tls_server_name", "tls_insecure_skip_verify":
				default:
					return d.Errf("redis: tls: unknown option %q (trust_pool, client_auth, server_name, insecure_skip_verify)", d.Val())
				}
				if err := once(opt); err != nil {
					return err
				}
				if err := s.unmarshalTLS(d, opt); err != nil {
					return err
				}
			}
			continue
		}
		if strings.HasPrefix(name, "tls_") {
			if err := s.unmarshalTLS(d, name); err != nil {
				return err
			}
			continue
		}
		args := d.RemainingArgs()
		switch name {
		case "cluster":
			if len(args) != 0 {
				return d.Errf("redis: cluster: takes no argument (list the seed nodes with address)")
			}
			s.Cluster = true
			continue
		case "address":
			switch len(args) {
			case 0:
				return d.Errf("redis: address: expected host:port")
			case 1:
				s.Address = args[0]
			default:
				s.Addresses = args
			}
			continue
		}
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
		case "url":
			s.URL = arg
		case "sentinel":
			s.Sentinel = arg
		case "sentinel_username":
			s.SentinelUsername = arg
		case "sentinel_password":
			s.SentinelPassword = arg
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
	return nil
}

// unmarshalTLS reads one TLS setting, named as reverse_proxy's transport
// names it (tls_trust_pool, ...), at d's current token.
func (s *RedisStore) unmarshalTLS(d *caddyfile.Dispenser, name string) error {
	if s.TLS == nil {
		s.TLS = &RedisTLS{}
	}
	if name == "tls_trust_pool" {
		if !d.NextArg() {
			return d.Errf("redis: tls_trust_pool: expected a source, such as tls_trust_pool file <ca.pem>")
		}
		source := d.Val()
		mod, err := caddyfile.UnmarshalModule(d, "tls.ca_pool.source."+source)
		if err != nil {
			return d.Errf("redis: tls_trust_pool: %v", err)
		}
		if _, ok := mod.(caddytls.CA); !ok {
			return d.Errf("redis: tls_trust_pool: %s is not a CA pool source", source)
		}
		s.TLS.CARaw = caddyconfig.JSONModuleObject(mod, "provider", source, nil)
		return nil
	}
	args := d.RemainingArgs()
	switch name {
	case "tls_client_auth":
		if len(args) != 2 {
			return d.Errf("redis: tls_client_auth: expected <cert_file> <key_file>, got %d argument(s)", len(args))
		}
		s.TLS.ClientCertificateFile, s.TLS.ClientCertificateKeyFile = args[0], args[1]
	case "tls_server_name":
		if len(args) != 1 {
			return d.Errf("redis: tls_server_name: expected a name, got %d argument(s)", len(args))
		}
		s.TLS.ServerName = args[0]
	case "tls_insecure_skip_verify":
		if len(args) != 0 {
			return d.Errf("redis: tls_insecure_skip_verify: takes no argument")
		}
		s.TLS.InsecureSkipVerify = true
	default:
		return d.Errf("redis: unknown option %q (tls_trust_pool, tls_client_auth, tls_server_name, tls_insecure_skip_verify)", name)
	}
	return nil
}
