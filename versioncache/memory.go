package versioncache

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/dgraph-io/ristretto/v2/z"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// Defaults and limits of the in-process store.
const (
	DefaultMemoryBytes = 64 << 20
	DefaultTTL         = 10 * time.Minute
	// MinMemoryBytes leaves room for entries beside the fixed parts
	// (ristretto's set buffer and sketch, the write stamps).
	MinMemoryBytes = 1 << 20
)

// MemoryConfig configures the in-process store.
type MemoryConfig struct {
	// MaxBytes bounds the memory of the whole table (cache_size): entries,
	// the key index, ristretto's bookkeeping and the fixed-size arrays.
	// Default DefaultMemoryBytes, at least MinMemoryBytes.
	MaxBytes int64
	// TTL is how long a learned state is trusted (ttl). Default DefaultTTL.
	TTL time.Duration
}

// Memory is the in-process Store: states in a ristretto cache, write claims
// in a table of per-key locks, and "write stamps" that let a write tell an
// entry the cache dropped from a key it never saw.
//
// ristretto decides what is kept (admission, eviction, ttl, cost), but it
// cannot list keys, applies the Set of a new key asynchronously and may drop
// it. So Memory keeps a key index, the entries ristretto holds or is about
// to apply, and reads from it:
//   - a write's result is visible to the next write at once (read-your-
//     writes), even before ristretto has applied the Set; a write of a key
//     new to ristretto then waits until ristretto has decided on it
//     (settle), and so does a read in the rare case that the key's previous
//     Set was still pending (ristretto would keep that one and refuse the
//     new one);
//   - an entry ristretto drops leaves the index through its callbacks, and
//     is then unknown, never stale: the index is never filled from
//     ristretto's values;
//   - every Claim, Commit and Record stamps the key's slot with a monotonic
//     clock: a write that finds nothing although its slot was written within
//     the ttl is told so (Snapshot.Recent) and re-reads the upstream;
//   - lookups feed ristretto's frequency sketch by calling its Get for a
//     sample of them, so hot keys are still the ones it keeps.
type Memory struct {
	cache    *ristretto.Cache[string, *entry]
	ttl      int64 // nanoseconds
	base     time.Time
	stamps   []atomic.Int64
	slotMask uint64
	fixed    int64 // bytes outside ristretto's cost accounting
	maxBytes int64

	claims [shards]claimShard
	index  [shards]indexShard
	// sorted orders the key index for prefix listings; nil until the
	// first List (see prefix.go).
	sorted     atomic.Pointer[prefixIndex]
	sortedInit sync.Mutex

	// guard keeps ristretto's Close from racing a Set or Get (that panics):
	// every use of the cache holds it for reading, Close for writing.
	guard  sync.RWMutex
	closed atomic.Bool

	hits, misses                       atomic.Uint64
	evictions, expirations, rejections atomic.Uint64
	entries                            atomic.Int64
}

// shards is the number of shards of the claim table and of the key index.
const shards = 256

// entry is a key's place in the cache: the value ristretto holds (or is
// about to apply) and the key index points to. Its state is swapped in
// place when a change fits in the cost the entry was charged, so that most
// writes to a known key never call ristretto's Set (which costs more than
// the rest of a write); a change that needs more stores a new entry.
type entry struct {
	key     string
	h       uint64 // hashKey(key)
	charged int64  // the cost ristretto was given for the entry
	cur     atomic.Pointer[stored]
	exited  atomic.Bool // ristretto let go of it (OnExit)
}

// stored is one state of a key, never modified once stored.
type stored struct {
	state conflict.State
	at    int64 // Memory.now() when stored
}

// load returns the entry's current state.
func (e *entry) load() *stored { return e.cur.Load() }

// keyLock is a key's write claim, present while a write holds or waits for
// it. The claim is a token: its holder has it, or it sits in ch on its way
// to the next waiter. A lock nobody holds (refs == 0) may stay in its
// shard's table for the next write of the key, sparing a map insert and
// delete per write; at most maxIdleLocks per shard do.
type keyLock struct {
	refs int           // holder + waiters
	ch   chan struct{} // created by the first waiter
}

// maxIdleLocks bounds the idle locks of a claim shard.
const maxIdleLocks = 2

type claimShard struct {
	mu    sync.Mutex
	locks map[string]*keyLock
	idle  int      // locks with refs == 0
	_     [40]byte // keep shards on separate cache lines
}

// held reports whether a write holds or waits for the key's claim.
func (sh *claimShard) held(key string) bool {
	l := sh.locks[key]
	return l != nil && l.refs > 0
}

type indexShard struct {
	mu   sync.Mutex
	keys map[string]*entry
	_    [48]byte
}

// NewMemory opens an in-process store.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMemoryBytes
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxBytes < MinMemoryBytes {
		return nil, fmt.Errorf("versioncache: cache_size %d bytes is below the minimum of %d (1MiB)", cfg.MaxBytes, MinMemoryBytes)
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("versioncache: ttl %s is negative", cfg.TTL)
	}
	slots := clampPow2(cfg.MaxBytes/256, 4096, 1<<20)
	counters := max(cfg.MaxBytes/64, 4096)
	fixed := slots*8 + sketchBytes(counters) + setBufferBytes +
		shards*maxIdleLocks*idleLockBytes + int64(unsafe.Sizeof(Memory{}))
	if fixed >= cfg.MaxBytes/2 {
		return nil, fmt.Errorf("versioncache: cache_size %d bytes leaves no room for entries", cfg.MaxBytes)
	}
	m := &Memory{
		ttl:      int64(cfg.TTL),
		base:     time.Now(),
		stamps:   make([]atomic.Int64, slots),
		slotMask: uint64(slots - 1),
		fixed:    fixed,
		maxBytes: cfg.MaxBytes,
	}
	for i := range m.claims {
		m.claims[i].locks = make(map[string]*keyLock)
		m.index[i].keys = make(map[string]*entry)
	}
	cache, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: counters,
		MaxCost:     cfg.MaxBytes - fixed,
		BufferItems: 64,
		// Which callback fires when (ristretto v2.4.2): OnEvict for a victim
		// of admission (Expiration zero), for a ttl cleanup (Expiration set,
		// seconds after the ttl) and for everything in Close; OnReject when
		// a new key is refused: by TinyLFU, for a cost above MaxCost, or as
		// the second pending Set of one key. OnExit follows both, and also
		// fires for the value an update replaces (inside SetWithTTL) and for
		// Del (at once, and again when the deletion is applied). A Set
		// dropped from a full buffer fires nothing. The key index is kept by
		// OnExit alone.
		OnEvict: func(it *ristretto.Item[*entry]) {
			if m.closed.Load() {
				return
			}
			if it.Expiration.IsZero() {
				m.evictions.Add(1)
			} else {
				m.expirations.Add(1)
			}
		},
		OnReject: func(*ristretto.Item[*entry]) {
			if !m.closed.Load() {
				m.rejections.Add(1)
			}
		},
		OnExit: func(e *entry) {
			if e != nil {
				e.exited.Store(true)
				m.unindex(e)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("versioncache: %w", err)
	}
	m.cache = cache
	return m, nil
}

// now is the store's monotonic clock in nanoseconds, always > 0.
func (m *Memory) now() int64 { return int64(time.Since(m.base)) + 1 }

func hashKey(key string) uint64 { return z.MemHashString(key) }

func (m *Memory) slot(h uint64) *atomic.Int64 { return &m.stamps[h&m.slotMask] }

func (m *Memory) claimShard(h uint64) *claimShard { return &m.claims[h>>56] }

func (m *Memory) indexShard(h uint64) *indexShard { return &m.index[(h>>48)&(shards-1)] }

// A write stamp is (time << 1) | written: the time of the last Claim,
// Commit, Record or Purge of a key in the slot, and whether a write stored
// something there since the last purge.
const stampWritten = 1

// alive returns e's state if it is still trusted at now, or nil.
func (m *Memory) alive(e *entry, now int64) *stored {
	if e == nil {
		return nil
	}
	if v := e.load(); now-v.at < m.ttl {
		return v
	}
	return nil
}

// touchSample: one lookup in touchSample is shown to ristretto. Its Get is
// what counts an access for admission and eviction, and costs more than
// the lookup itself; a uniform sample keeps the keys' relative frequencies.
const touchSample = 32

func (m *Memory) touch(key string) {
	if rand.Uint32()%touchSample != 0 {
		return
	}
	m.guard.RLock()
	if !m.closed.Load() {
		m.cache.Get(key)
	}
	m.guard.RUnlock()
}

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (conflict.State, bool, error) {
	if m.closed.Load() {
		return conflict.State{}, false, ErrClosed
	}
	v := m.alive(m.indexed(key, hashKey(key)), m.now())
	m.count(v != nil)
	m.touch(key)
	if v == nil {
		return conflict.State{}, false, nil
	}
	return v.state, true, nil
}

// ReadStart implements Store: the token is the clock.
func (m *Memory) ReadStart(string) ReadToken { return ReadToken(m.now()) }

// Observe implements Store. The check and the Set are made under the key's
// claim shard mutex, under which Claim, Commit and Record stamp, so that a
// write cannot slip in between them.
func (m *Memory) Observe(_ context.Context, key string, tok ReadToken, version string, missing bool) (bool, error) {
	if m.closed.Load() {
		return false, ErrClosed
	}
	h := hashKey(key)
	sh := m.claimShard(h)

	// Hot path: the entry already says what the read saw, and was stored
	// recently enough (tok stands in for the clock).
	sh.mu.Lock()
	if !m.observable(sh, key, h, tok) {
		sh.mu.Unlock()
		return false, nil
	}
	e := m.indexed(key, h)
	var same bool
	if e != nil {
		v := e.load()
		same = int64(tok)-v.at < m.ttl/4 && says(&v.state, version, missing)
	}
	sh.mu.Unlock()
	if same {
		m.touch(key)
		return true, nil
	}

	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		return false, ErrClosed
	}
	sh.mu.Lock()
	if !m.observable(sh, key, h, tok) {
		sh.mu.Unlock()
		return false, nil
	}
	now := m.now()
	e = m.indexed(key, h)
	var old conflict.State
	if v := m.alive(e, now); v != nil {
		old = v.state
	}
	next := old.Observed(version)
	if missing {
		next = old.Missing()
	}
	n, async := m.setLocked(key, h, next, now)
	sh.mu.Unlock()
	if async && e != nil {
		// e was not replaced at once: its own Set is likely still pending.
		// Rare, and only then does a read wait for ristretto.
		m.settle(sh, key, h, n, tok)
	}
	return true, nil
}

// observable reports whether a read that started at tok may be recorded: no
// write holds or waits for the key, and none was decided or stored in its
// slot since tok. The claim shard mutex must be held.
func (m *Memory) observable(sh *claimShard, key string, h uint64, tok ReadToken) bool {
	return !sh.held(key) && m.slot(h).Load()>>1 < int64(tok)
}

// says reports whether storing what a read saw would change nothing.
func says(s *conflict.State, version string, missing bool) bool {
	switch {
	case s.Uncertain:
		return false
	case missing:
		return s.Deleted && s.Version == ""
	case s.Deleted || !s.Live || s.Version != version:
		return false // !Live: the read shows it exists, which the entry did not say
	}
	return version == "" || len(s.Superseded) == 0 || !s.IsSuperseded(version)
}

// Record implements Store.
func (m *Memory) Record(_ context.Context, key string, s conflict.State) error {
	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		return ErrClosed
	}
	m.write(key, hashKey(key), s, nil)
	return nil
}

// write stores a write's result and stamps the key's slot. If the write
// holds the key's claim l, it is released once the result is stored.
// m.guard must be held for reading.
func (m *Memory) write(key string, h uint64, s conflict.State, l *keyLock) {
	sh := m.claimShard(h)
	sh.mu.Lock()
	now := m.now()
	m.slot(h).Store(now<<1 | stampWritten)
	e, async := m.setLocked(key, h, s, now)
	if !async {
		if l != nil {
			releaseLocked(sh, l)
		}
		sh.mu.Unlock()
		return
	}
	sh.mu.Unlock()
	m.settle(sh, key, h, e, 0)
	if l != nil {
		sh.mu.Lock()
		releaseLocked(sh, l)
		sh.mu.Unlock()
	}
}

// settle waits until ristretto has decided on the Set of e, a key that was
// new to it, and repairs what its handling of two pending Sets of one new
// key does: it keeps the first and refuses the second, whose OnExit takes
// the key out of the index. e is a write's entry (tok == 0) or a read's
// that started at tok, and is put back only if it may still be recorded.
func (m *Memory) settle(sh *claimShard, key string, h uint64, e *entry, tok ReadToken) {
	m.cache.Wait()
	if m.indexed(key, h) == e && !e.exited.Load() {
		return // applied
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m.cache.Wait() // so that a purge that came in between is applied too
	if m.indexed(key, h) != nil {
		return // e itself, or something stored after it
	}
	if tok != 0 && !m.observable(sh, key, h, tok) {
		return // a write came since the read started
	}
	if !e.exited.Load() {
		// ristretto holds e and refused a later Set of the key, which
		// took e out of the index (a write's own settle repairs that).
		m.addIndex(e)
		if e.exited.Load() {
			m.unindex(e) // evicted meanwhile: OnExit came before addIndex
		}
		return
	}
	if _, held := m.cache.Get(key); held {
		// ristretto refused e and holds an older entry: replace it (an
		// update is applied at once).
		v := e.load()
		m.setLocked(key, h, v.state, v.at)
	}
}

// setLocked stores s as the key's new state. It reports whether ristretto
// may apply the Set asynchronously: the key was new to it, as far as can be
// told. The claim shard mutex must be held, and m.guard for reading.
func (m *Memory) setLocked(key string, h uint64, s conflict.State, now int64) (e *entry, async bool) {
	v := &stored{state: s, at: now}
	e, p := m.swapIndex(key, h, v)
	if e == p {
		return e, false // changed in place
	}
	// Indexed before the Set: an update calls OnExit for the entry it
	// replaces before it returns, and an eviction of e may follow at once.
	// No ristretto TTL: entries expire logically (alive), which spares
	// ristretto's expiry buckets, about 120 bytes and a bucket move per Set.
	if !m.cache.Set(e.key, e, e.charged) {
		// The set buffer was full: the entry was dropped.
		m.unindex(e)
		m.rejections.Add(1)
		return e, false
	}
	return e, p == nil || !p.exited.Load()
}

// Claim implements Store.
func (m *Memory) Claim(ctx context.Context, key string, timeout time.Duration) (Lease, Snapshot, error) {
	if m.closed.Load() {
		return nil, Snapshot{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, Snapshot{}, err
	}
	h := hashKey(key)
	ls := &memoryLease{m: m, key: key, h: h}
	sh := m.claimShard(h)
	sh.mu.Lock()
	ls.l = sh.locks[key]
	if ls.l == nil || ls.l.refs == 0 {
		if ls.l == nil {
			ls.l = &keyLock{}
			sh.locks[key] = ls.l
		} else {
			sh.idle--
		}
		ls.l.refs = 1
		prev, now := m.stampClaim(h)
		sh.mu.Unlock()
		return m.claimed(ls, prev, now)
	}
	ls.l.refs++
	if ls.l.ch == nil {
		ls.l.ch = make(chan struct{}, 1)
	}
	sh.mu.Unlock()

	if err := m.await(ctx, sh, key, ls.l, timeout); err != nil {
		var snap Snapshot
		if err == ErrClaimTimeout {
			snap.State, snap.Found, _ = m.Get(ctx, key)
		}
		return nil, snap, err
	}
	sh.mu.Lock()
	prev, now := m.stampClaim(h)
	sh.mu.Unlock()
	return m.claimed(ls, prev, now)
}

// stampClaim marks the decision of a write in the key's slot, keeping the
// written bit, and returns the previous stamp. The claim shard mutex must
// be held.
func (m *Memory) stampClaim(h uint64) (prev, now int64) {
	s := m.slot(h)
	prev, now = s.Load(), m.now()
	s.Store(now<<1 | prev&stampWritten)
	return prev, now
}

// await waits for the token of l, which the caller has joined as a waiter.
func (m *Memory) await(ctx context.Context, sh *claimShard, key string, l *keyLock, timeout time.Duration) error {
	var err error
	if timeout <= 0 {
		select {
		case <-l.ch:
			return nil
		default:
			err = ErrClaimTimeout
		}
	} else {
		t := time.NewTimer(timeout)
		select {
		case <-l.ch:
			t.Stop()
			return nil
		case <-t.C:
			err = ErrClaimTimeout
		case <-ctx.Done():
			t.Stop()
			err = ctx.Err()
		}
	}
	sh.mu.Lock()
	select {
	case <-l.ch:
		// Handed over just as the wait ended: pass it on.
		releaseLocked(sh, l)
	default:
		l.refs-- // the holder still counts, so refs stays > 0
	}
	sh.mu.Unlock()
	return err
}

// releaseLocked gives up a held claim: to the next waiter, or the lock
// stays idle in the table; past maxIdleLocks, the idle ones leave it. The
// shard mutex must be held.
func releaseLocked(sh *claimShard, l *keyLock) {
	l.refs--
	if l.refs > 0 {
		l.ch <- struct{}{} // never blocks: there is one token
		return
	}
	if sh.idle++; sh.idle > maxIdleLocks {
		for k, x := range sh.locks {
			if x.refs == 0 {
				delete(sh.locks, k)
			}
		}
		sh.idle = 0
	}
}

// claimed returns the snapshot of a claim just acquired.
func (m *Memory) claimed(ls *memoryLease, prev, now int64) (Lease, Snapshot, error) {
	if m.closed.Load() {
		ls.Release()
		return nil, Snapshot{}, ErrClosed
	}
	v := m.alive(m.indexed(ls.key, ls.h), now)
	m.count(v != nil)
	m.touch(ls.key)
	if v != nil {
		return ls, Snapshot{State: v.state, Found: true}, nil
	}
	recent := prev&stampWritten != 0 && now-prev>>1 < m.ttl
	return ls, Snapshot{Recent: recent}, nil
}

type memoryLease struct {
	m    *Memory
	key  string
	h    uint64
	l    *keyLock
	done atomic.Bool
}

// Commit implements Lease: the state is stored, visible to the next claim,
// before the claim is released.
func (ls *memoryLease) Commit(_ context.Context, s conflict.State) error {
	if !ls.done.CompareAndSwap(false, true) {
		return nil
	}
	m := ls.m
	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		ls.release()
		return ErrClosed
	}
	m.write(ls.key, ls.h, s, ls.l)
	return nil
}

// Release implements Lease.
func (ls *memoryLease) Release() {
	if ls.done.CompareAndSwap(false, true) {
		ls.release()
	}
}

func (ls *memoryLease) release() {
	sh := ls.m.claimShard(ls.h)
	sh.mu.Lock()
	releaseLocked(sh, ls.l)
	sh.mu.Unlock()
}

// Purge implements Store.
func (m *Memory) Purge(_ context.Context, key string, prefix bool) (int, error) {
	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		return 0, ErrClosed
	}
	if !prefix {
		if m.purge(key, hashKey(key)) {
			return 1, nil
		}
		return 0, nil
	}
	var keys []string
	for i := range m.index {
		ix := &m.index[i]
		ix.mu.Lock()
		for k := range ix.keys {
			if strings.HasPrefix(k, key) {
				keys = append(keys, k)
			}
		}
		ix.mu.Unlock()
	}
	n := 0
	for _, k := range keys {
		if m.purge(k, hashKey(k)) {
			n++
		}
	}
	return n, nil
}

// purge forgets one key and clears the written bit of its slot, so that the
// next write decides on "unknown"; the stamp's time keeps a read that was in
// flight from recording what the purge meant to forget.
func (m *Memory) purge(key string, h uint64) bool {
	sh := m.claimShard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := m.now()
	p := m.indexed(key, h)
	m.cache.Del(key)
	m.unindex(p) // at once, even if ristretto has not applied its Set yet
	m.slot(h).Store(now << 1)
	return m.alive(p, now) != nil
}

// List implements Store. ristretto cannot iterate keys; List walks the
// prefix index (built on the first List) from the cursor and looks each
// key up in the key index, skipping the ones whose ttl passed.
func (m *Memory) List(_ context.Context, prefix, after string, limit int) ([]Item, string, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		return nil, "", ErrClosed
	}
	px := m.prefixes()
	now := m.now()
	items := make([]Item, 0, min(limit+1, 1024))
	from := listStart(prefix, after)
	for batch := min(limit+1, 1024); len(items) <= limit; {
		keys := px.ascend(from, prefix, batch)
		for _, k := range keys {
			e := m.indexed(k, hashKey(k))
			v := m.alive(e, now)
			if v == nil {
				continue
			}
			items = append(items, Item{Key: e.key, State: v.state})
			if len(items) > limit {
				break
			}
		}
		if len(keys) < batch {
			break
		}
		from = keys[len(keys)-1] + "\x00"
	}
	return page(items, limit)
}

// Stats implements Store. Entries counts the key index, which keeps an
// expired key (invisible to every lookup) until eviction reclaims it;
// Expirations stays 0, since ristretto keeps no ttl of its own.
// Bytes counts the fixed parts and ristretto's cost of the entries; an
// update that grows an entry is charged at once but evicts only when the
// next new key is admitted, so Bytes may pass MaxBytes by a few entries'
// growth in between.
func (m *Memory) Stats() Stats {
	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		return Stats{}
	}
	return Stats{
		Hits:        m.hits.Load(),
		Misses:      m.misses.Load(),
		Evictions:   m.evictions.Load(),
		Expirations: m.expirations.Load(),
		Rejections:  m.rejections.Load(),
		Entries:     uint64(max(m.entries.Load(), 0)),
		Bytes:       m.fixed + m.cache.MaxCost() - m.cache.RemainingCost(),
		MaxBytes:    m.maxBytes,
	}
}

// Close implements Store. It waits for the calls in flight on the cache;
// writes waiting for a claim get ErrClosed once they have it.
func (m *Memory) Close() error {
	m.guard.Lock()
	defer m.guard.Unlock()
	if m.closed.Swap(true) {
		return nil
	}
	m.cache.Close()
	for i := range m.index {
		ix := &m.index[i]
		ix.mu.Lock()
		clear(ix.keys)
		ix.mu.Unlock()
	}
	if p := m.sorted.Load(); p != nil {
		p.mu.Lock()
		p.tree.Clear(false)
		p.mu.Unlock()
	}
	m.entries.Store(0)
	return nil
}

func (m *Memory) count(hit bool) {
	if hit {
		m.hits.Add(1)
	} else {
		m.misses.Add(1)
	}
}

// The key index: the entries ristretto holds or is about to apply, keyed by
// key; every lookup is served from it. An entry enters just before its Set
// and leaves through OnExit, which ristretto calls for every value that
// leaves the cache (evicted, expired, rejected, replaced, deleted); a
// dropped Set and a purge remove it directly. So the index holds at most the
// cached keys plus the Sets in ristretto's buffer, and its bytes are charged
// in each entry's cost. The prefix index (prefix.go), once built, follows it
// key for key. When ristretto refuses a Set because an older Set of
// the key was still pending, it keeps the older entry and the index loses
// the key: unknown rather than stale (and a write settles it back).

// swapIndex makes v the key's state. If the key's entry is still held
// (or about to be) and was charged enough for v, v replaces its state in
// place and e == prev. Otherwise e is a new entry holding v, put in the
// index in place of prev, with its key string taken from prev (or a copy
// of key, so as not to pin a caller's larger buffer); the caller Sets it.
func (m *Memory) swapIndex(key string, h uint64, v *stored) (e, prev *entry) {
	ix := m.indexShard(h)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	prev = ix.keys[key]
	if prev != nil {
		if !prev.exited.Load() && cost(prev.key, &v.state)+m.sortedCost() <= prev.charged {
			// If ristretto lets go of prev meanwhile, the key leaves the
			// index with it: unknown, as if evicted right after a Set.
			prev.cur.Store(v)
			return prev, prev
		}
		key = prev.key
	} else {
		key = strings.Clone(key)
		m.entries.Add(1)
		if p := m.sorted.Load(); p != nil {
			p.add(key)
		}
	}
	e = &entry{key: key, h: h, charged: cost(key, &v.state) + m.sortedCost()}
	e.cur.Store(v)
	ix.keys[key] = e
	return e, prev
}

// addIndex puts e back as its key's entry.
func (m *Memory) addIndex(e *entry) {
	ix := m.indexShard(e.h)
	ix.mu.Lock()
	if _, had := ix.keys[e.key]; !had {
		m.entries.Add(1)
		if p := m.sorted.Load(); p != nil {
			p.add(e.key)
		}
	}
	ix.keys[e.key] = e
	ix.mu.Unlock()
}

// unindex removes e, unless a newer entry of its key replaced it already.
func (m *Memory) unindex(e *entry) {
	if e == nil {
		return
	}
	ix := m.indexShard(e.h)
	ix.mu.Lock()
	if ix.keys[e.key] == e {
		delete(ix.keys, e.key)
		m.entries.Add(-1)
		if p := m.sorted.Load(); p != nil {
			p.remove(e.key)
		}
	}
	ix.mu.Unlock()
}

func (m *Memory) indexed(key string, h uint64) *entry {
	ix := m.indexShard(h)
	ix.mu.Lock()
	e := ix.keys[key]
	ix.mu.Unlock()
	return e
}

// Memory accounting.
const (
	// entryBytes is the heap size of an entry and of one stored state
	// (48- and 64-byte size classes); the state's predecessors are garbage.
	entryBytes = int64(unsafe.Sizeof(entry{})+15)&^15 + int64(unsafe.Sizeof(stored{})+15)&^15
	// perKeyBookkeeping is what a key costs beyond its entry and strings
	// and the 56 bytes ristretto adds itself: the key index slot, ristretto's
	// store and policy map slots at their load factors. Measured, not
	// guessed: 1M distinct keys through a 64MiB store, live heap after GC
	// divided by the entries kept (go test -run HeapPerEntry ./versioncache).
	perKeyBookkeeping = 240
	// setBufferBytes is ristretto's set buffer, a channel of 32Ki pointers.
	setBufferBytes = 32 << 10 * 8
	// idleLockBytes bounds an idle claim lock: the lock, its map slot, and
	// the key string it keeps (a typical key; keys are not bounded).
	idleLockBytes = 128
)

// cost estimates the bytes an entry of key holding s takes: the structs,
// their strings and slice, and the bookkeeping of the key. ristretto adds
// its own per-item cost (IgnoreInternalCost is off).
func cost(key string, s *conflict.State) int64 {
	n := entryBytes + perKeyBookkeeping + strBytes(key) + strBytes(s.Version)
	if c := cap(s.Superseded); c > 0 {
		n += int64(c) * int64(unsafe.Sizeof(""))
		for _, v := range s.Superseded {
			n += strBytes(v)
		}
	}
	return n
}

func strBytes(s string) int64 { return int64(len(s)+7) &^ 7 }

// sketchBytes is the size of ristretto's TinyLFU for n counters: a
// count-min sketch of 4 rows of 4-bit counters and a bloom filter with 1%
// false positives, both rounded up to powers of two.
func sketchBytes(n int64) int64 {
	sketch := 4 * pow2(n) / 2
	bloomBits := int64(math.Ceil(float64(n) * -math.Log(0.01) / (math.Ln2 * math.Ln2)))
	return sketch + max(pow2(bloomBits), 512)/8
}

func pow2(n int64) int64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(uint64(n-1))
}

func clampPow2(n, lo, hi int64) int64 { return min(max(pow2(n), lo), hi) }

var (
	_ Store = (*Memory)(nil)
	_ Lease = (*memoryLease)(nil)
)
