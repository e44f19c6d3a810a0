package versioncache

import (
	"runtime"
	"testing"
)

// BenchmarkGCFullTable is one collection of a process whose version table
// is full (cache_size 64MiB of keys learned by reads, as the benchmark's
// get-churn leaves it): the marking every GC cycle of Caddy then pays, in
// proportion to the pointers the table holds (about 6 per key: the key
// index's slot, ristretto's, the entry's key and state, the state's
// version). BENCHMARKS.md: "B and C carry a full table".
func BenchmarkGCFullTable(b *testing.B) {
	m, err := NewMemory(MemoryConfig{MaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	learnReads(m, 400_000)
	runtime.GC()
	for b.Loop() {
		runtime.GC()
	}
	entries := m.Stats().Entries
	b.ReportMetric(float64(entries), "entries")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(entries), "ns/entry")
	runtime.KeepAlive(m)
}
