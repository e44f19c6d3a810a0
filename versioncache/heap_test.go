package versioncache

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// TestHeapPerEntry: cache_size bounds the live heap of the store. Many more
// distinct keys than fit are read through a 16MiB store; after a GC the
// heap it holds must stay within MaxBytes (GC headroom aside: with GOGC=100
// the process may use up to twice its live heap; set GOMEMLIMIT to bound it).
func TestHeapPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a store with 300k keys")
	}
	const maxBytes = 16 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := NewMemory(MemoryConfig{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	learnReads(m, 300_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	live := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := m.Stats()
	t.Logf("entries %d, accounted %d bytes (%d B/entry), live heap %.1f MiB (%d B/entry)",
		st.Entries, st.Bytes, st.Bytes/int64(max(st.Entries, 1)), float64(live)/(1<<20), live/int64(max(st.Entries, 1)))
	if st.Bytes > maxBytes {
		t.Errorf("accounted %d bytes, over cache_size %d", st.Bytes, maxBytes)
	}
	if live > maxBytes*11/10 {
		t.Errorf("live heap %d bytes is over cache_size %d (+10%%): the cost model undercounts", live, maxBytes)
	}
	runtime.KeepAlive(m)
}

// learnReads makes m learn n distinct keys, each from one read, as a
// scanner's or a crawler's GETs would, and waits for ristretto to apply them.
func learnReads(m *Memory, n int) {
	ctx := context.Background()
	for i := range n {
		key := fmt.Sprintf("127.0.0.1/docs/%d", 50_000_000+i)
		m.Observe(ctx, key, m.ReadStart(key), fmt.Sprintf(`"%d-1"`, 50_000_000+i), false)
		if i%1000 == 0 {
			time.Sleep(time.Millisecond) // let ristretto drain its buffers, as between requests
		}
	}
	m.cache.Wait()
}

// TestHeapLongKeys: writes to 2,000 distinct 100 KiB keys keep the store's
// live heap within cache_size; every per-key structure (entries, index,
// idle write locks, drop marks) is bounded by it, whatever the keys' length.
func TestHeapLongKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB of keys")
	}
	const maxBytes = 8 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := NewMemory(MemoryConfig{MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	long := strings.Repeat("p", 100<<10)
	for i := range 2000 {
		key := fmt.Sprintf("127.0.0.1/%d/%s", i, long) // a fresh string, as the handler makes
		m.Observe(ctx, key, m.ReadStart(key), `"1"`, false)
		l, _, err := m.Claim(ctx, key, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(ctx, conflict.State{Version: `"2"`, Live: true}); err != nil {
			t.Fatal(err)
		}
	}
	m.cache.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	live := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := m.Stats()
	t.Logf("entries %d, accounted %.1f MiB, live heap %.1f MiB", st.Entries, float64(st.Bytes)/(1<<20), float64(live)/(1<<20))
	if live > maxBytes*11/10 {
		t.Errorf("live heap %.1f MiB is over cache_size %d MiB (+10%%)", float64(live)/(1<<20), maxBytes>>20)
	}
	runtime.KeepAlive(m)
}
