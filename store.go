package caddyconflict

import (
	"fmt"
	"sync"
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

// stores keeps version tables across config reloads: a reload provisions
// the new handler before the old one is cleaned up, so the table is shared.
var stores = caddy.NewUsagePool()

type pooledStore struct {
	versioncache.Store
}

func (p pooledStore) Destruct() error { return p.Store.Close() }

// openStore opens (or shares) the handler's version table.
func (h *Handler) openStore(ctx caddy.Context) error {
	var mod StoreModule = MemoryStore{}
	if h.StoreRaw != nil {
		m, err := ctx.LoadModule(h, "StoreRaw")
		if err != nil {
			return fmt.Errorf("conflict: store: %w", err)
		}
		mod = m.(StoreModule)
	}
	if p, ok := mod.(StoreErrorPolicy); ok {
		h.rejectOnStoreError = p.RejectOnError()
	}
	// Versions of different sources mean different things: a table is
	// shared only by handlers that read versions alike.
	opts := StoreOptions{
		CacheSize: h.CacheSize,
		TTL:       time.Duration(h.TTL),
		Namespace: h.Version.Source + "|" + h.Version.Field + "|" + h.Version.Pointer,
	}
	key := mod.PoolKey(opts)
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := mod.OpenStore(ctx, opts)
		if err != nil {
			return nil, err
		}
		return pooledStore{s}, nil
	})
	if err != nil {
		return fmt.Errorf("conflict: store: %w", err)
	}
	h.poolKey = key
	h.store = val.(pooledStore).Store
	return nil
}

// openStores lists the version tables of the running configuration.
func openStores() []versioncache.Store {
	var list []versioncache.Store
	stores.Range(func(_, v any) bool {
		if s, ok := v.(pooledStore); ok {
			list = append(list, s.Store)
		}
		return true
	})
	return list
}

// openHistories lists the histories of the running configuration: the
// shared one where a Redis store shares it (a purge reaches Redis and every
// node's near-cache), else the node's own.
func openHistories() []versioncache.Representations {
	var list []versioncache.Representations
	stores.Range(func(_, v any) bool {
		if h, ok := v.(pooledHistory); ok {
			if h.shared != nil {
				list = append(list, h.shared)
			} else {
				list = append(list, h.History)
			}
		}
		return true
	})
	return list
}

// pooledHistory keeps a history in the stores pool, so that a reload keeps
// it like the version table. With a Redis store, shared shares it among
// the nodes (History is then its near-cache).
type pooledHistory struct {
	*versioncache.History
	shared *versioncache.RedisHistory
}

func (p pooledHistory) Destruct() error {
	if p.shared != nil {
		sharedHistories.Delete(p.History)
		_ = p.shared.Close()
	}
	return p.History.Close()
}

// sharedHistories finds the shared history of a handler's history (the
// handler keeps the near-cache, *versioncache.History).
var sharedHistories sync.Map // *versioncache.History -> *versioncache.RedisHistory

// representations is where h records and looks up representations: the
// shared history with a Redis store, else h.history. h.history must be set.
func (h *Handler) representations() versioncache.Representations {
	if s, ok := sharedHistories.Load(h.history); ok {
		return s.(*versioncache.RedisHistory)
	}
	return h.history
}

// provisionHistory opens (or shares) the history. Like the version table
// it is shared by handlers that read versions alike and survives reloads.
// With a Redis store the representations are shared through Redis too
// (one history per Redis table), the node's own history being its
// near-cache.
func (h *Handler) provisionHistory() error {
	if h.History == nil {
		return nil
	}
	size := h.History.Size
	if size == 0 {
		size = DefaultHistorySize
	}
	key := fmt.Sprintf("history|%d|%d|%s|%s|%s", h.History.Count, size,
		h.Version.Source, h.Version.Field, h.Version.Pointer)
	if _, ok := h.store.(*versioncache.Redis); ok {
		key += "|" + h.poolKey
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		local := versioncache.NewHistory(h.History.Count, size)
		p := pooledHistory{History: local}
		if s, ok := versioncache.NewRedisHistory(h.store, local, h.History.Count, size); ok {
			p.shared = s
			sharedHistories.Store(local, s)
		}
		return p, nil
	})
	if err != nil {
		return fmt.Errorf("conflict: history: %w", err)
	}
	h.historyPoolKey = key
	h.history = val.(pooledHistory).History
	return nil
}

// cleanupHistory releases the history; the last handler using it drops it.
func (h *Handler) cleanupHistory() error {
	if h.historyPoolKey == "" {
		return nil
	}
	_, err := stores.Delete(h.historyPoolKey)
	h.historyPoolKey = ""
	return err
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
