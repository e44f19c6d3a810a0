package versioncache

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// TestMemoryIndexBoundedUnderFlood: the key index, which serves the prefix
// listings that `guard children` and the admin API use, follows ristretto's
// admission and eviction. A flood of distinct keys through reads and writes
// leaves it no larger than the entries the memory bound has room for (plus
// the Sets ristretto has not applied yet, while they are pending), and what
// a prefix listing shows is what lookups find.
func TestMemoryIndexBoundedUnderFlood(t *testing.T) {
	const flood = 200_000
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: 2 * MinMemoryBytes, TTL: time.Hour})
	// The smallest entry: a short key, no versions, ristretto's 56 bytes.
	minCost := entryBytes + perKeyBookkeeping + 56 + strBytes("h/f/0")
	maxEntries := int((m.maxBytes - m.fixed) / minCost)
	const pending = 32 << 10 // ristretto's set buffer

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	peak := 0
	for i := range flood {
		k := fmt.Sprintf("h/f/%d", i)
		switch i % 4 {
		case 0, 1: // a read learns a version (GET 200)
			_, _ = m.Observe(ctx, k, m.ReadStart(k), `"v`+k+`"`, false)
		case 2: // a read learns a tombstone (GET 404)
			_, _ = m.Observe(ctx, k, m.ReadStart(k), "", true)
		case 3: // a write through the proxy
			l, snap, err := m.Claim(ctx, k, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = l.Commit(ctx, snap.State.AfterWrite(nil, conflict.WriteResult{Method: http.MethodPut, Status: 201}))
		}
		if i == flood/10 {
			// Listing builds the prefix index: from here on it follows the flood.
			if _, _, err := m.List(ctx, "h/f/", "", 10); err != nil {
				t.Fatal(err)
			}
		}
		if i%5000 == 0 {
			n := m.indexLen()
			peak = max(peak, n)
			if n > maxEntries+pending {
				t.Fatalf("after %d keys the index holds %d, bound %d + %d pending", i, n, maxEntries, pending)
			}
		}
	}
	m.cache.Wait()
	eventually(t, "the index to match the cache", func() bool {
		m.cache.Wait()
		return m.indexLen() == m.cachedLen()
	})
	n := m.indexLen()
	st := m.Stats()
	if n > maxEntries || int(st.Entries) != n {
		t.Errorf("after the flood: index %d, Stats.Entries %d, bound %d", n, st.Entries, maxEntries)
	}
	if sorted := m.sorted.Load().len(); sorted != n {
		t.Errorf("the prefix index holds %d keys, the key index %d", sorted, n)
	}
	if st.Bytes > st.MaxBytes {
		t.Errorf("%d bytes in use, bound %d", st.Bytes, st.MaxBytes)
	}
	// A prefix listing shows only what lookups find.
	listed, after := 0, ""
	for {
		items, next, err := m.List(ctx, "h/f/", after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if s, ok, _ := m.Get(ctx, it.Key); !ok || s.Deleted != it.State.Deleted {
				t.Fatalf("listed %s (%+v) but Get says %+v, %v", it.Key, it.State, s, ok)
			}
		}
		listed += len(items)
		if next == "" {
			break
		}
		after = next
	}
	if listed != n {
		t.Errorf("listed %d keys, index holds %d", listed, n)
	}
	runtime.GC()
	var after2 runtime.MemStats
	runtime.ReadMemStats(&after2)
	grown := int64(after2.HeapAlloc) - int64(before.HeapAlloc)
	// The bound is the cache_size; Go's map buckets that grew during the
	// pending phase are not given back, so allow a margin.
	if grown > 4*m.maxBytes {
		t.Errorf("heap grew by %d bytes for a %d-byte table", grown, m.maxBytes)
	}
	t.Logf("%d keys flooded: index %d (peak sampled %d), bound %d; %d evictions, %d rejections; %d bytes accounted of %d; heap +%d KiB",
		flood, n, peak, maxEntries, st.Evictions, st.Rejections, st.Bytes, st.MaxBytes, grown>>10)
}

// BenchmarkListPrefix: a prefix listing by table size, what `guard
// children` costs on a DELETE; the prefix index keeps it from growing with
// the keys outside the prefix (a scan of the key index took 22 ms at 100k).
func BenchmarkListPrefix(b *testing.B) {
	for _, keys := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			ctx := context.Background()
			m := newTestMemory(b, MemoryConfig{MaxBytes: 256 << 20, TTL: time.Hour})
			for i := range keys {
				k := "h/other/" + strings.Repeat("x", i%7) + fmt.Sprint(i)
				_, _ = m.Observe(ctx, k, m.ReadStart(k), `"v"`, false)
			}
			_, _ = m.Observe(ctx, "h/bucket/a", m.ReadStart("h/bucket/a"), `"v"`, false)
			m.cache.Wait()
			m.List(ctx, "h/", "", 1) // builds the prefix index, once per table
			b.ReportAllocs()
			for b.Loop() {
				items, _, _ := m.List(ctx, "h/bucket/", "", 100)
				if len(items) != 1 {
					b.Fatalf("%d items", len(items))
				}
			}
		})
	}
}

// TestMemoryPrefixIndexBuiltUnderLoad: the prefix index built while keys
// arrive and leave ends up holding exactly the key index.
func TestMemoryPrefixIndexBuiltUnderLoad(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: MinMemoryBytes, TTL: time.Hour})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20_000 {
				k := fmt.Sprintf("h/w%d/%d", w, i)
				_, _ = m.Observe(ctx, k, m.ReadStart(k), `"v"`, false)
				if i%7 == 0 {
					_, _ = m.Purge(ctx, k, false)
				}
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if _, _, err := m.List(ctx, "h/", "", 1); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	eventually(t, "the index to settle", func() bool {
		m.cache.Wait()
		return m.indexLen() == m.cachedLen()
	})
	if sorted, n := m.sorted.Load().len(), m.indexLen(); sorted != n {
		t.Fatalf("the prefix index holds %d keys, the key index %d", sorted, n)
	}
	// Listed pages cover the index in order, without repeats.
	seen, after, prev := 0, "", ""
	for {
		items, next, err := m.List(ctx, "h/", after, 333)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.Key <= prev {
				t.Fatalf("%q listed after %q", it.Key, prev)
			}
			prev = it.Key
		}
		seen += len(items)
		if next == "" {
			break
		}
		after = next
	}
	if seen != m.indexLen() {
		t.Errorf("listed %d keys of %d", seen, m.indexLen())
	}
}

// BenchmarkObservePrefixIndex is the read path's store work with the prefix
// index off (never listed) and on (listed once): a hot key costs the same,
// a key new to the table also enters the tree.
func BenchmarkObservePrefixIndex(b *testing.B) {
	for _, c := range []struct {
		name     string
		distinct bool
		listed   bool
	}{
		{"hot/index=off", false, false},
		{"hot/index=on", false, true},
		{"distinct/index=off", true, false},
		{"distinct/index=on", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := newTestMemory(b, MemoryConfig{})
			ctx := context.Background()
			keys := make([]string, 1<<18)
			for i := range keys {
				keys[i] = "example.com/articles/" + fmt.Sprint(i)
			}
			if !c.distinct {
				keys = keys[:1]
				_, _ = m.Observe(ctx, keys[0], m.ReadStart(keys[0]), `"v1"`, false)
				m.cache.Wait()
			}
			if c.listed {
				_, _, _ = m.List(ctx, "example.com/", "", 1)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				k := keys[i&(len(keys)-1)]
				_, _ = m.Observe(ctx, k, m.ReadStart(k), `"v1"`, false)
				i++
			}
		})
	}
}
