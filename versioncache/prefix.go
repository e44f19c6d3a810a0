package versioncache

import (
	"strings"
	"sync"

	"github.com/google/btree"
)

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
