package caddyconflict

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// StoreOptions are the handler settings a store is opened with.
type StoreOptions struct {
	// CacheSize bounds the in-process memory of the store (cache_size).
	CacheSize int64
	// TTL is how long a learned version is trusted (ttl).
	TTL time.Duration
	// Namespace tells version sources apart: handlers that read versions
	// differently never share a table.
	Namespace string
}

// StoreModule is a module in the http.handlers.conflict.stores namespace:
// it opens the version table of a handler. Open stores are kept in a
// caddy.UsagePool under PoolKey, so a config reload keeps them.
type StoreModule interface {
	// PoolKey identifies the store these options open: handlers (and
	// configs across a reload) with the same key share one table.
	PoolKey(o StoreOptions) string
	// OpenStore creates the store.
	OpenStore(ctx caddy.Context, o StoreOptions) (versioncache.Store, error)
}

// StoreErrorPolicy is implemented by stores that can be unreachable (Redis):
// RejectOnError says whether writes are rejected (503 store-unavailable)
// rather than forwarded unchecked while the store cannot be reached.
type StoreErrorPolicy interface {
	RejectOnError() bool
}

// MemoryStore is the in-process version table (ristretto), bounded by
// cache_size. It is the default store.
type MemoryStore struct{}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.conflict.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// PoolKey implements StoreModule.
func (MemoryStore) PoolKey(o StoreOptions) string {
	return fmt.Sprintf("memory|%d|%s|%s", o.CacheSize, o.TTL, o.Namespace)
}

// OpenStore implements StoreModule.
func (MemoryStore) OpenStore(_ caddy.Context, o StoreOptions) (versioncache.Store, error) {
	return versioncache.NewMemory(versioncache.MemoryConfig{MaxBytes: o.CacheSize, TTL: o.TTL})
}

// UnmarshalCaddyfile: `store memory` takes no options.
func (MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Errf("store: memory takes no options")
	}
	return nil
}

// Interface guards
var (
	_ StoreModule           = MemoryStore{}
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
)
