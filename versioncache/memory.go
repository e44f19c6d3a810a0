package versioncache

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
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
	// (ristretto's set buffer and sketch, the read fences and drop marks).
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
// in a table of per-key locks, read fences that keep late reads out, and
// drop marks that let a write tell a key whose entry the cache dropped from
// a key it never saw (marks.go).
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
//   - a key the proxy wrote whose entry left the index within the ttl of
//     that write gets a drop mark: a write that finds nothing but the mark
//     is told so (Snapshot.Dropped) and re-reads the upstream; a key it
//     never wrote is unknown;
//   - lookups feed ristretto's frequency sketch by calling its Get for a
//     sample of them, so hot keys are still the ones it keeps.
type Memory struct {
	cache    *ristretto.Cache[string, *entry]
	retired  *atomic.Bool // set when cache is replaced (Resize): its callbacks stop
	ttl      atomic.Int64 // nanoseconds
	base     time.Time
	fixed    int64 // bytes outside ristretto's cost accounting
	maxBytes int64

	// fences are the read fences (marks.go), under the claim shard mutex
	// of their keys; a key's fence is fences[h>>fenceShift].
	fences     []int64
	fenceShift uint
	// marks are the drop marks (marks.go), under the index shard mutex of
	// their keys.
	marks []markSet

	claims [shards]claimShard
	index  [shards]indexShard
	// sorted orders the key index for prefix listings; nil until the
	// first List (see index.go).
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
	// wrote is Memory.now() of the key's last Commit or Record since it was
	// last purged (0: none): an entry that leaves the index within the ttl
	// of it leaves a drop mark.
	wrote int64
}

// load returns the entry's current state.
func (e *entry) load() *stored { return e.cur.Load() }

// NewMemory opens an in-process store.
func NewMemory(cfg MemoryConfig) (*Memory, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMemoryBytes
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("versioncache: ttl %s is negative", cfg.TTL)
	}
	sz, err := sizeFor(cfg.MaxBytes)
	if err != nil {
		return nil, err
	}
	m := &Memory{
		base:       time.Now(),
		fixed:      sz.fixed,
		maxBytes:   cfg.MaxBytes,
		fences:     make([]int64, sz.fences),
		fenceShift: fenceShift(sz.fences),
		marks:      make([]markSet, sz.sets),
	}
	m.ttl.Store(int64(cfg.TTL))
	for i := range m.claims {
		m.claims[i].locks = make(map[string]*keyLock)
		m.index[i].keys = make(map[string]*entry)
	}
	cache, retired, err := m.newCache(sz)
	if err != nil {
		return nil, err
	}
	m.cache, m.retired = cache, retired
	return m, nil
}

// sizes are the parts of the memory store sized from cache_size.
type sizes struct {
	fences, sets, counters int64
	fixed                  int64 // bytes outside ristretto's cost accounting
	maxCost                int64 // ristretto's MaxCost: what is left for entries
}

func sizeFor(maxBytes int64) (sizes, error) {
	if maxBytes < MinMemoryBytes {
		return sizes{}, fmt.Errorf("versioncache: cache_size %d bytes is below the minimum of %d (1MiB)", maxBytes, MinMemoryBytes)
	}
	sz := sizes{
		fences:   clampPow2(maxBytes/512, 4096, 1<<20),
		sets:     markSets(maxBytes),
		counters: max(maxBytes/64, 4096),
	}
	sz.fixed = sz.fences*8 + sz.sets*markSetBytes + sketchBytes(sz.counters) + setBufferBytes +
		shards*idleShardBytes + int64(unsafe.Sizeof(Memory{}))
	if sz.fixed >= maxBytes/2 {
		return sizes{}, fmt.Errorf("versioncache: cache_size %d bytes leaves no room for entries", maxBytes)
	}
	sz.maxCost = maxBytes - sz.fixed
	return sz, nil
}

func fenceShift(fences int64) uint { return uint(64 - bits.Len64(uint64(fences-1))) }

// newCache creates the ristretto cache of m. Its callbacks do nothing once
// the cache is retired (closed by Close, or replaced by Resize).
func (m *Memory) newCache(sz sizes) (*ristretto.Cache[string, *entry], *atomic.Bool, error) {
	retired := new(atomic.Bool)
	cache, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: sz.counters,
		MaxCost:     sz.maxCost,
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
			if m.closed.Load() || retired.Load() {
				return
			}
			if it.Expiration.IsZero() {
				m.evictions.Add(1)
			} else {
				m.expirations.Add(1)
			}
		},
		OnReject: func(*ristretto.Item[*entry]) {
			if !m.closed.Load() && !retired.Load() {
				m.rejections.Add(1)
			}
		},
		OnExit: func(e *entry) {
			if e != nil && !retired.Load() {
				e.exited.Store(true)
				m.unindex(e)
			}
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("versioncache: %w", err)
	}
	return cache, retired, nil
}

// now is the store's monotonic clock in nanoseconds, always > 0.
func (m *Memory) now() int64 { return int64(time.Since(m.base)) + 1 }

func hashKey(key string) uint64 { return z.MemHashString(key) }

// ttlNanos is how long a stored state is trusted, in nanoseconds.
func (m *Memory) ttlNanos() int64 { return m.ttl.Load() }

func (m *Memory) claimShard(h uint64) *claimShard { return &m.claims[h>>56] }

func (m *Memory) indexShard(h uint64) *indexShard { return &m.index[(h>>48)&(shards-1)] }

// alive returns e's state if it is still trusted at now, or nil.
func (m *Memory) alive(e *entry, now int64) *stored {
	if e == nil {
		return nil
	}
	if v := e.load(); now-v.at < m.ttlNanos() {
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
		same = int64(tok)-v.at < m.ttlNanos()/4 && says(&v.state, version, missing)
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
	n, async := m.setLocked(key, h, &stored{state: next, at: now})
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
// slot since tok (its read fence). The claim shard mutex must be held.
func (m *Memory) observable(sh *claimShard, key string, h uint64, tok ReadToken) bool {
	return !sh.held(key) && *m.fence(h) < int64(tok)
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

// write stores a write's result, marked as written, and moves its read
// fence. If the write
// holds the key's claim l, it is released once the result is stored.
// m.guard must be held for reading.
func (m *Memory) write(key string, h uint64, s conflict.State, l *keyLock) {
	sh := m.claimShard(h)
	sh.mu.Lock()
	now := m.now()
	*m.fence(h) = now
	e, async := m.setLocked(key, h, &stored{state: s, at: now, wrote: now})
	if !async {
		if l != nil {
			releaseLocked(sh, key, l)
		}
		sh.mu.Unlock()
		return
	}
	sh.mu.Unlock()
	m.settle(sh, key, h, e, 0)
	if l != nil {
		sh.mu.Lock()
		releaseLocked(sh, key, l)
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
		v := *e.load()
		m.setLocked(key, h, &v)
	}
}

// setLocked stores v as the key's new state (a read's v.wrote is taken
// from what the key had, see swapIndex). It reports whether ristretto
// may apply the Set asynchronously: the key was new to it, as far as can be
// told. The claim shard mutex must be held, and m.guard for reading.
func (m *Memory) setLocked(key string, h uint64, v *stored) (e *entry, async bool) {
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

// purge forgets one key and its drop mark, so that the next write decides
// on "unknown"; the read fence keeps a read that was in flight from
// recording what the purge meant to forget. (A prefix purge only finds the
// keys the index holds: a dropped key under the prefix stays dropped, and
// is re-read before its next write.)
func (m *Memory) purge(key string, h uint64) bool {
	sh := m.claimShard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := m.now()
	*m.fence(h) = now
	// Out of the index at once, even if ristretto has not applied its Set
	// yet, and before Del, whose OnExit would leave a drop mark.
	p := m.forget(key, h, now)
	m.cache.Del(key)
	return m.alive(p, now) != nil
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

var (
	_ Store = (*Memory)(nil)
	_ Lease = (*memoryLease)(nil)
)

// Resize changes the bounds of an open store in place, for a config reload
// that changes cache_size or ttl: the key index, its entries, the drop
// marks and the write locks stay, so nothing the table knew is forgotten
// but what the new bound cannot hold.
//
//   - ttl applies at once to every entry and drop mark, since both are
//     judged against the current ttl when they are read: a shorter ttl
//     makes older entries unknown, a longer one trusts them longer (an
//     entry that had outlived the old ttl is trusted again if it is within
//     the new one: its state is still the last the proxy learned).
//   - A new cache_size re-makes every part sized from it rather than keeping
//     the first size's: the read fences (all set to now, so that reads in
//     flight are not recorded: the safe direction), the drop mark sets (the
//     live marks are moved into the new sets; a set whose keys' old sets
//     had spilled starts spilled, and marks that no longer fit spill, both
//     reporting keys dropped: a re-read, never a lost update), and
//     ristretto itself, whose sketch and MaxCost are fixed at creation: a
//     new cache is made and the entries are set into it, oldest first, so
//     that when the new size holds fewer, the ones stored last are kept;
//     those it does not take leave the index as evicted entries do (with
//     a drop mark if the proxy wrote them within the ttl). The cost
//     accounting is the new size's, as for a store opened with it.
//
// Writes and reads that record wait while a new cache_size is applied
// (3.7 s to grow a table of 500,000 entries, 8.2 s to shrink it to 64 MiB,
// on 2 busy cores); lookups and claims do not.
func (m *Memory) Resize(maxBytes int64, ttl time.Duration) error {
	if maxBytes == 0 {
		maxBytes = DefaultMemoryBytes
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 {
		return fmt.Errorf("versioncache: ttl %s is negative", ttl)
	}
	sz, err := sizeFor(maxBytes)
	if err != nil {
		return err
	}
	m.guard.Lock()
	defer m.guard.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	m.ttl.Store(int64(ttl))
	if maxBytes == m.maxBytes {
		return nil
	}
	cache, retired, err := m.newCache(sz)
	if err != nil {
		return err
	}
	now := m.now()

	// Read fences: under every claim shard mutex, under which they are read.
	fences := make([]int64, sz.fences)
	for i := range fences {
		fences[i] = now
	}
	for i := range m.claims {
		m.claims[i].mu.Lock()
	}
	m.fences, m.fenceShift = fences, fenceShift(sz.fences)
	for i := range m.claims {
		m.claims[i].mu.Unlock()
	}

	// Drop marks: under every index shard mutex, under which they are read.
	for i := range m.index {
		m.index[i].mu.Lock()
	}
	m.remark(make([]markSet, sz.sets), now)
	for i := range m.index {
		m.index[i].mu.Unlock()
	}

	// ristretto: the old cache is retired first, so that its Close (which
	// evicts everything) leaves the index alone. No Set or Get is in flight:
	// they all hold m.guard.
	old, oldRetired := m.cache, m.retired
	oldRetired.Store(true)
	old.Close()
	m.cache, m.retired = cache, retired
	m.fixed, m.maxBytes = sz.fixed, maxBytes
	var all []*entry
	for i := range m.index {
		ix := &m.index[i]
		ix.mu.Lock()
		for _, e := range ix.keys {
			all = append(all, e)
		}
		ix.mu.Unlock()
	}
	slices.SortFunc(all, func(a, b *entry) int { return cmp.Compare(a.load().at, b.load().at) })
	for n, e := range all {
		if !cache.Set(e.key, e, e.charged) {
			cache.Wait() // the set buffer was full
			if !cache.Set(e.key, e, e.charged) {
				m.unindex(e)
				m.rejections.Add(1)
			}
		}
		if n%4096 == 4095 {
			cache.Wait()
		}
	}
	cache.Wait()
	return nil
}

// remark moves the live drop marks into sets, which become m.marks. Every
// index shard mutex must be held.
func (m *Memory) remark(sets []markSet, now int64) {
	old := m.marks
	ttl := m.ttlNanos()
	oldMask, newMask := len(old)-1, len(sets)-1
	// A key's sets are its hash masked by the set count (a power of two),
	// so the keys of new set i were in old set i&oldMask (more sets), or
	// those of old set x are in new set x&newMask (fewer).
	for x := range old {
		spill := old[x].spill
		if !liveMark(spill, now, ttl) {
			continue
		}
		if newMask >= oldMask {
			for i := x; i <= newMask; i += oldMask + 1 {
				sets[i].spill = max(sets[i].spill, spill)
			}
		} else {
			sets[x&newMask].spill = max(sets[x&newMask].spill, spill)
		}
	}
	m.marks = sets
	for x := range old {
		s := &old[x]
		for w := range s.at {
			if liveMark(s.at[w], now, ttl) {
				p := m.lockMarks(s.h[w])
				p.put(s.h[w], s.at[w], now, ttl)
				p.unlock()
			}
		}
	}
}
