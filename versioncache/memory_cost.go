package versioncache

import (
	"math"
	"math/bits"
	"unsafe"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// Memory accounting of the memory store: what an entry and the fixed parts
// cost against cache_size.

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
	// idleLockBytes is what an idle claim lock costs beside its key string:
	// the lock (16 bytes) and its map slot (the key's string header, the
	// pointer and a control byte, at the map's load factor).
	idleLockBytes = 64
	// idleShardBytes bounds the idle claim locks of a shard, their key
	// strings counted (idleBytes): two locks of keys up to 64 bytes, one of
	// a longer key; the lock of a key over 192 bytes is never kept idle.
	// Held locks are not bounded by it: there is one per write in flight.
	idleShardBytes = 256
)

// idleBytes is what an idle claim lock of key costs (memory_claim.go).
func idleBytes(key string) int64 { return idleLockBytes + strBytes(key) }

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
	if c := cap(s.Variants); c > 0 {
		n += int64(c) * int64(unsafe.Sizeof(conflict.Variant{}))
		for _, v := range s.Variants {
			n += strBytes(v.ID) + strBytes(v.Version)
		}
	}
	return n
}

// charge is what a new entry holding s is charged: its cost and, for a
// key the proxy has written (it has superseded versions), room for the
// superseded list to fill up with versions as long as the current one.
// A key written once is usually written again; with the room, each of
// those writes changes the entry in place (swapIndex) instead of storing
// a larger one through ristretto's Set, the most expensive step of a
// write. The room is charged, not allocated: fewer keys fit in
// cache_size, never more bytes.
func charge(key string, s *conflict.State) int64 {
	n := cost(key, s)
	if k := len(s.Superseded); k > 0 && k < conflict.MaxSuperseded {
		n += int64(conflict.MaxSuperseded-k) * strBytes(s.Version)
		n += int64(max(conflict.MaxSuperseded-cap(s.Superseded), 0)) * int64(unsafe.Sizeof(""))
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
