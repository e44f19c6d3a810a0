package versioncache

import (
	"bytes"
	"context"
	"strings"
	"sync"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// HistoryEntryOverhead is what one stored representation costs beside its
// bytes, key and version: the entry, its version string, and (for a key
// with a single entry) the key's list, its map slot and the rounding of
// its string. It is counted against the bound, so the bound holds for the
// memory really used, not only for the bodies.
const HistoryEntryOverhead = 320

// History keeps the last representations of each key (SPEC "Helping the
// client merge"): per key the newest perKey, keyed by canonical version, all
// of them within maxBytes; the representation seen least recently is
// evicted first. It is in-process: with a shared version store (Redis) each
// node keeps its own history.
//
// The bound is exact: an entry costs its body's allocation, its key and
// version plus HistoryEntryOverhead, and Add evicts until the total is
// within maxBytes.
type History struct {
	perKey   int
	maxBytes int64

	mu         sync.Mutex
	bytes      int64
	keys       map[string]*historyKey
	head, tail *historyEntry // head: seen most recently
	evictions  uint64
	closed     bool
}

type historyKey struct {
	key     string
	entries []*historyEntry // oldest first
}

type historyEntry struct {
	k          *historyKey
	version    string // canonical
	body       []byte
	cost       int64
	prev, next *historyEntry
}

// HistoryStats are a history's counters.
type HistoryStats struct {
	Keys, Entries   int
	Bytes, MaxBytes int64
	Evictions       uint64
}

// NewHistory returns a history of perKey representations per key within
// maxBytes.
func NewHistory(perKey int, maxBytes int64) *History {
	return &History{perKey: max(perKey, 1), maxBytes: maxBytes, keys: make(map[string]*historyKey)}
}

// entryCost is what an entry holding a body of n bytes (allocated with
// capacity c, c >= n: the allocator's size class) costs.
func entryCost(key, version string, c int) int64 {
	return int64(c+len(key)+len(version)) + HistoryEntryOverhead
}

// Add records body as the representation of key at version. A version
// already held with the same bytes only counts as seen again; with other
// bytes it names two different states and is forgotten, since a merge
// based on it could be based on the wrong one. The body is copied.
func (h *History) Add(key, version string, body []byte) {
	v := conflict.Canonical(version)
	if v == "" {
		return
	}
	h.mu.Lock()
	if h.closed || entryCost(key, v, len(body)) > h.maxBytes {
		h.mu.Unlock()
		return
	}
	if e := h.find(key, v); e != nil {
		if bytes.Equal(e.body, body) {
			h.touch(e)
		} else {
			h.remove(e)
		}
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()

	// Copy outside the lock: bodies may be up to max_body. append rounds the
	// capacity up to the size class the allocator really uses.
	kept := append([]byte{}, body...)
	e := &historyEntry{version: v, body: kept, cost: entryCost(key, v, cap(kept))}

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if old := h.find(key, v); old != nil { // added meanwhile
		if !bytes.Equal(old.body, body) {
			h.remove(old)
		}
		return
	}
	k := h.keys[key]
	if k == nil {
		k = &historyKey{key: key, entries: make([]*historyEntry, 0, min(h.perKey, 4))}
		h.keys[key] = k
	}
	e.k = k
	k.entries = append(k.entries, e)
	h.pushFront(e)
	h.bytes += e.cost
	if len(k.entries) > h.perKey {
		h.evict(k.entries[0])
	}
	for h.bytes > h.maxBytes && h.tail != nil {
		h.evict(h.tail)
	}
}

// Get returns the representation of key at version. The slice is shared:
// callers must not modify it.
func (h *History) Get(key, version string) ([]byte, bool) {
	v := conflict.Canonical(version)
	h.mu.Lock()
	defer h.mu.Unlock()
	if e := h.find(key, v); e != nil {
		return e.body, true
	}
	return nil, false
}

// Purge forgets one key (prefix == false) or every key starting with it and
// reports how many keys it forgot.
func (h *History) Purge(key string, prefix bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for name, k := range h.keys {
		if name == key || (prefix && strings.HasPrefix(name, key)) {
			for len(k.entries) > 0 {
				h.remove(k.entries[0])
			}
			n++
		}
	}
	return n
}

// Stats reports the history's counters.
func (h *History) Stats() HistoryStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := HistoryStats{Keys: len(h.keys), Bytes: h.bytes, MaxBytes: h.maxBytes, Evictions: h.evictions}
	for _, k := range h.keys {
		s.Entries += len(k.entries)
	}
	return s
}

// Close forgets everything; Add does nothing afterwards.
func (h *History) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.keys = map[string]*historyKey{}
	h.head, h.tail, h.bytes = nil, nil, 0
	return nil
}

func (h *History) find(key, version string) *historyEntry {
	k := h.keys[key]
	if k == nil {
		return nil
	}
	for _, e := range k.entries {
		if e.version == version {
			return e
		}
	}
	return nil
}

func (h *History) evict(e *historyEntry) {
	h.evictions++
	h.remove(e)
}

// remove unlinks e from its key and from the recency list.
func (h *History) remove(e *historyEntry) {
	k := e.k
	for i, x := range k.entries {
		if x == e {
			k.entries = append(k.entries[:i], k.entries[i+1:]...)
			break
		}
	}
	if len(k.entries) == 0 {
		delete(h.keys, k.key)
	}
	h.unlink(e)
	h.bytes -= e.cost
	e.body = nil
}

// touch marks e as seen now, in its key's list and in the recency list.
func (h *History) touch(e *historyEntry) {
	k := e.k
	if i := len(k.entries) - 1; k.entries[i] != e {
		for j, x := range k.entries {
			if x == e {
				copy(k.entries[j:], k.entries[j+1:])
				k.entries[i] = e
				break
			}
		}
	}
	if h.head == e {
		return
	}
	h.unlink(e)
	h.pushFront(e)
}

func (h *History) pushFront(e *historyEntry) {
	e.prev, e.next = nil, h.head
	if h.head != nil {
		h.head.prev = e
	}
	h.head = e
	if h.tail == nil {
		h.tail = e
	}
}

func (h *History) unlink(e *historyEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if h.head == e {
		h.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if h.tail == e {
		h.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// Representations is where the handler keeps the representations its
// merge help works from: a History (one node), or a RedisHistory, which
// shares them among the nodes of a Redis store and keeps a History as its
// near-cache. Both implement it.
type Representations interface {
	// Add records body as the representation of key at version. On the
	// read path: it never waits for a round trip.
	Add(key, version string, body []byte)
	// AddNow records it before returning (the write path: the next write
	// to the key, on any node, finds it).
	AddNow(ctx context.Context, key, version string, body []byte)
	// Lookup returns the representations of key at each of versions (nil
	// where none is known).
	Lookup(ctx context.Context, key string, versions ...string) [][]byte
	// Purge forgets one key or every key with a prefix.
	Purge(key string, prefix bool) int
	// DropKey forgets key in every history_scope (key, and every key
	// starting with key + "\x00").
	DropKey(ctx context.Context, key string)
}

// AddNow implements Representations: Add, which never waits.
func (h *History) AddNow(_ context.Context, key, version string, body []byte) {
	h.Add(key, version, body)
}

// Lookup implements Representations.
func (h *History) Lookup(_ context.Context, key string, versions ...string) [][]byte {
	out := make([][]byte, len(versions))
	for i, v := range versions {
		out[i], _ = h.Get(key, v)
	}
	return out
}

// DropKey implements Representations.
func (h *History) DropKey(_ context.Context, key string) {
	h.Purge(key, false)
	h.Purge(key+"\x00", true)
}

var _ Representations = (*History)(nil)

// Resize changes the bounds of an open history in place (a config reload
// that changes history's count or size): keys holding more than perKey
// representations lose their oldest, and then the representations seen
// least recently are evicted until the total is within maxBytes.
func (h *History) Resize(perKey int, maxBytes int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.perKey, h.maxBytes = max(perKey, 1), maxBytes
	for _, k := range h.keys {
		for len(k.entries) > h.perKey {
			h.evict(k.entries[0])
		}
	}
	for h.bytes > h.maxBytes && h.tail != nil {
		h.evict(h.tail)
	}
}
