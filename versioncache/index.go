package versioncache

import (
	"context"
	"strings"
	"sync"

	"github.com/google/btree"
)

// The key index: the entries ristretto holds or is about to apply, keyed by
// key; every lookup is served from it. An entry enters just before its Set
// and leaves through OnExit, which ristretto calls for every value that
// leaves the cache (evicted, expired, rejected, replaced, deleted); a
// dropped Set and a purge remove it directly. So the index holds at most the
// cached keys plus the Sets in ristretto's buffer, and its bytes are charged
// in each entry's cost. The prefix index (below), once built, follows it
// key for key. When ristretto refuses a Set because an older Set of
// the key was still pending, it keeps the older entry and the index loses
// the key: unknown rather than stale (and a write settles it back).
//
// This file holds both indexes of the memory store and List, which reads
// them.

// indexShard is one shard of the key index.
type indexShard struct {
	mu   sync.Mutex
	keys map[string]*entry
	_    [48]byte
}

// swapIndex makes v the key's state. If the key's entry is still held
// (or about to be) and was charged enough for v, v replaces its state in
// place and e == prev. Otherwise e is a new entry holding v, put in the
// index in place of prev, with its key string taken from prev (or a copy
// of key, so as not to pin a caller's larger buffer); the caller Sets it.
// A v that is not a write (v.wrote == 0) takes the key's last write from
// prev, or from the key's drop mark when the index did not hold it.
func (m *Memory) swapIndex(key string, h uint64, v *stored) (e, prev *entry) {
	ix := m.indexShard(h)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	prev = ix.keys[key]
	if prev != nil && v.wrote == 0 {
		v.wrote = prev.load().wrote
	} else if prev == nil {
		if w := m.takeMark(h, v.at); v.wrote == 0 {
			v.wrote = w
		}
	}
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
	e = &entry{key: key, h: h, charged: charge(key, &v.state) + m.sortedCost()}
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
// If the proxy wrote the key within the ttl, the key is now dropped: its
// drop mark is set in the same step (marks.go).
func (m *Memory) unindex(e *entry) {
	if e == nil {
		return
	}
	ix := m.indexShard(e.h)
	ix.mu.Lock()
	if ix.keys[e.key] == e {
		m.removeLocked(e)
		m.mark(e.h, e.load().wrote, m.now())
	}
	ix.mu.Unlock()
}

// forget removes the key's entry, if any, and its drop mark (Purge), and
// returns the entry.
func (m *Memory) forget(key string, h uint64, now int64) *entry {
	ix := m.indexShard(h)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.keys[key]
	if e != nil {
		m.removeLocked(e)
	}
	m.forgetMark(h, now)
	return e
}

// removeLocked takes e out of both indexes. Its index shard mutex must be
// held.
func (m *Memory) removeLocked(e *entry) {
	delete(m.indexShard(e.h).keys, e.key)
	m.entries.Add(-1)
	if p := m.sorted.Load(); p != nil {
		p.remove(e.key)
	}
}

// lookup returns the key's state if it is trusted at now; otherwise dropped
// reports whether the proxy wrote the key within the ttl and the index lost
// it since (marks.go).
func (m *Memory) lookup(key string, h uint64, now int64) (v *stored, dropped bool) {
	ix := m.indexShard(h)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.keys[key]; e != nil {
		// Held but expired: its last write is older than the ttl too.
		return m.alive(e, now), false
	}
	return nil, m.droppedMark(h, now)
}

func (m *Memory) indexed(key string, h uint64) *entry {
	ix := m.indexShard(h)
	ix.mu.Lock()
	e := ix.keys[key]
	ix.mu.Unlock()
	return e
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

// prefixIndex holds the keys of the key index in order, so that a listing
// by prefix (List: `guard children` on a DELETE, the admin API) costs the
// keys it returns rather than a scan of every key. The memory store builds
// it on the first List and keeps it from then on: a table nobody lists
// pays nothing for it. Keys enter and leave it with the key index (under
// the index shard's mutex, then this one), so it is bounded like the index
// and follows ristretto's evictions and expirations.
type prefixIndex struct {
	mu   sync.Mutex
	tree *btree.BTreeG[string]
}

// prefixIndexBytes estimates what a key costs in the tree: its string
// header in a node of degree 32, about two thirds full, and the node's
// share of pointers.
const prefixIndexBytes = 32

func newPrefixIndex() *prefixIndex {
	return &prefixIndex{tree: btree.NewOrderedG[string](32)}
}

func (p *prefixIndex) add(k string) {
	p.mu.Lock()
	p.tree.ReplaceOrInsert(k)
	p.mu.Unlock()
}

func (p *prefixIndex) remove(k string) {
	p.mu.Lock()
	p.tree.Delete(k)
	p.mu.Unlock()
}

func (p *prefixIndex) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tree.Len()
}

// ascend returns up to n keys, in order, that start with prefix and are
// not less than from.
func (p *prefixIndex) ascend(from, prefix string, n int) []string {
	keys := make([]string, 0, min(n, 256))
	p.mu.Lock()
	p.tree.AscendGreaterOrEqual(max(from, prefix), func(k string) bool {
		if !strings.HasPrefix(k, prefix) {
			return false // past the prefix's range
		}
		keys = append(keys, k)
		return len(keys) < n
	})
	p.mu.Unlock()
	return keys
}

// prefixes returns the prefix index, building it from the key index the
// first time. The pointer is published before the shards are copied, and
// each shard is copied under its mutex, under which swapIndex, addIndex and
// unindex read the pointer: so every change of the key index either sees
// the tree or happens before its shard is copied.
func (m *Memory) prefixes() *prefixIndex {
	if p := m.sorted.Load(); p != nil {
		return p
	}
	m.sortedInit.Lock()
	defer m.sortedInit.Unlock()
	if p := m.sorted.Load(); p != nil {
		return p
	}
	p := newPrefixIndex()
	m.sorted.Store(p)
	for i := range m.index {
		ix := &m.index[i]
		ix.mu.Lock()
		p.mu.Lock()
		for k := range ix.keys {
			p.tree.ReplaceOrInsert(k)
		}
		p.mu.Unlock()
		ix.mu.Unlock()
	}
	return p
}

// sortedCost is what an entry adds to the prefix index, once it exists.
func (m *Memory) sortedCost() int64 {
	if m.sorted.Load() != nil {
		return prefixIndexBytes
	}
	return 0
}
