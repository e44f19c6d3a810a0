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
	sizes *poolSizes
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
		var resize func(a, b int64) error
		if r, ok := s.(storeResizer); ok {
			resize = func(a, b int64) error { return r.Resize(a, time.Duration(b)) }
		}
		return pooledStore{s, newPoolSizes([2]int64{opts.CacheSize, int64(opts.TTL)}, resize)}, nil
	})
	if err != nil {
		return fmt.Errorf("conflict: store: %w", err)
	}
	p := val.(pooledStore)
	if err := p.sizes.ask(h, [2]int64{opts.CacheSize, int64(opts.TTL)}); err != nil {
		_, _ = stores.Delete(key)
		return fmt.Errorf("conflict: store: resizing the table kept across the reload: %w", err)
	}
	h.poolKey = key
	h.store = p.Store
	return nil
}

// storeResizer is a store whose bounds a reload may change in place
// (versioncache.Memory).
type storeResizer interface {
	Resize(maxBytes int64, ttl time.Duration) error
}

// poolSizes is what the handlers sharing one pooled table (or history)
// asked for: cache_size and ttl (history: count and size). A reload
// provisions the new config's handlers before it cleans up the old
// config's, and the table is the same for both (its pool key leaves the
// sizes out), so for a while two configs with different sizes use it.
// "The newest config wins": the sizes of the handler provisioned last
// apply from its Provision on, to the handlers of the draining config too;
// if that handler is cleaned up while older ones remain (a config that
// failed to load after provisioning it, or caddy validate in-process), the
// sizes of the newest handler left apply again. Handlers of one config
// that share a table but set different sizes get the sizes of the one
// provisioned last.
type poolSizes struct {
	mu     sync.Mutex
	seq    uint64
	asks   map[*Handler]sizeAsk
	cur    [2]int64               // the sizes in force
	resize func(a, b int64) error // nil: cannot be resized
}

type sizeAsk struct {
	seq  uint64
	size [2]int64
}

func newPoolSizes(first [2]int64, resize func(a, b int64) error) *poolSizes {
	return &poolSizes{asks: make(map[*Handler]sizeAsk), cur: first, resize: resize}
}

// ask records h's sizes and applies them: the newest ask wins.
func (p *poolSizes) ask(h *Handler, size [2]int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.apply(size); err != nil {
		return err
	}
	p.seq++
	p.asks[h] = sizeAsk{p.seq, size}
	return nil
}

// withdraw forgets h's ask; the newest ask left applies.
func (p *poolSizes) withdraw(h *Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.asks[h]; !ok {
		return
	}
	delete(p.asks, h)
	var newest sizeAsk
	for _, a := range p.asks {
		if a.seq > newest.seq {
			newest = a
		}
	}
	if newest.seq > 0 {
		_ = p.apply(newest.size) // on failure the sizes in force stay
	}
}

func (p *poolSizes) apply(size [2]int64) error {
	if size == p.cur || p.resize == nil {
		return nil
	}
	if err := p.resize(size[0], size[1]); err != nil {
		return err
	}
	p.cur = size
	return nil
}

// withdrawSizes withdraws h's asks from the pooled table and history it
// uses (Cleanup, through cleanupHistory).
func (h *Handler) withdrawSizes() {
	stores.Range(func(k, v any) bool {
		switch p := v.(type) {
		case pooledStore:
			if k == h.poolKey {
				p.sizes.withdraw(h)
			}
		case pooledHistory:
			if k == h.historyPoolKey {
				p.sizes.withdraw(h)
			}
		}
		return true
	})
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
	sizes  *poolSizes
}

func (p pooledHistory) Destruct() error {
	if p.shared != nil {
		_ = p.shared.Close()
	}
	return p.History.Close()
}

// representations is where h records and looks up representations (see
// Handler.reps). h.history must be set.
func (h *Handler) representations() versioncache.Representations { return h.reps }

// provisionHistory opens (or shares) the history. Like the version table
// it is shared by handlers that read versions alike and survives reloads,
// also one that changes its count or size: the node's history is resized
// in place (see poolSizes). A reload that turns history off drops it once
// the old config is cleaned up; turned on again, it starts empty.
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
	// The key names the history, not its bounds (the shared one of a Redis
	// store is sized when it is made, so it keeps them in its key).
	key := fmt.Sprintf("history|%s|%s|%s", h.Version.Source, h.Version.Field, h.Version.Pointer)
	if _, ok := h.store.(*versioncache.Redis); ok {
		key += fmt.Sprintf("|%d|%d|%s", h.History.Count, size, h.poolKey)
	}
	bounds := [2]int64{int64(h.History.Count), size}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		local := versioncache.NewHistory(h.History.Count, size)
		p := pooledHistory{History: local, sizes: newPoolSizes(bounds, func(count, size int64) error {
			local.Resize(int(count), size)
			return nil
		})}
		if s, ok := versioncache.NewRedisHistory(h.store, local, h.History.Count, size); ok {
			p.shared = s
		}
		return p, nil
	})
	if err != nil {
		return fmt.Errorf("conflict: history: %w", err)
	}
	p := val.(pooledHistory)
	_ = p.sizes.ask(h, bounds) // never fails
	h.historyPoolKey = key
	h.history, h.reps = p.History, p.History
	if p.shared != nil {
		h.reps = p.shared
	}
	return nil
}

// cleanupHistory releases the history; the last handler using it drops it.
// It also withdraws the handler's sizes from its table and history (Cleanup
// calls it first).
func (h *Handler) cleanupHistory() error {
	h.withdrawSizes()
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

// PoolKey implements StoreModule. It names the table alone, not its bounds:
// a reload that changes cache_size or ttl keeps the table, its write locks
// and drop marks, and resizes it in place (versioncache.Memory.Resize).
func (MemoryStore) PoolKey(o StoreOptions) string {
	return "memory|" + o.Namespace
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
