package versioncache

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestHistoryPerKey(t *testing.T) {
	h := NewHistory(3, 1<<20)
	for i := 1; i <= 5; i++ {
		h.Add("example.com/articles/1", fmt.Sprintf(`W/"v%d"`, i), fmt.Appendf(nil, `{"rev":%d}`, i))
	}
	for i := 1; i <= 5; i++ {
		_, ok := h.Get("example.com/articles/1", fmt.Sprintf(`"v%d"`, i)) // canonical: W/ and quotes ignored
		if want := i >= 3; ok != want {
			t.Errorf("v%d held = %v, want %v", i, ok, want)
		}
	}
	if b, _ := h.Get("example.com/articles/1", `"v5-gzip"`); string(b) != `{"rev":5}` {
		t.Errorf("v5 = %s", b)
	}
	// Seeing v3 again makes it the newest: v4 goes next.
	h.Add("example.com/articles/1", `"v3"`, []byte(`{"rev":3}`))
	h.Add("example.com/articles/1", `"v6"`, []byte(`{"rev":6}`))
	if _, ok := h.Get("example.com/articles/1", `"v3"`); !ok {
		t.Error("v3 was evicted although it was seen again")
	}
	if _, ok := h.Get("example.com/articles/1", `"v4"`); ok {
		t.Error("v4 kept")
	}
	if s := h.Stats(); s.Keys != 1 || s.Entries != 3 {
		t.Errorf("stats %+v", s)
	}
}

// TestHistoryAmbiguousVersion: a version that names two different bodies
// is forgotten, never used as a merge base.
func TestHistoryAmbiguousVersion(t *testing.T) {
	h := NewHistory(8, 1<<20)
	h.Add("k", `"v1"`, []byte(`{"a":1}`))
	h.Add("k", `"v1"`, []byte(`{"a":1}`))
	if _, ok := h.Get("k", `"v1"`); !ok {
		t.Fatal("same bytes again: forgotten")
	}
	h.Add("k", `"v1"`, []byte(`{"a":2}`))
	if b, ok := h.Get("k", `"v1"`); ok {
		t.Fatalf("ambiguous version kept: %s", b)
	}
	if s := h.Stats(); s.Bytes != 0 || s.Keys != 0 {
		t.Errorf("stats after forgetting: %+v", s)
	}
}

func TestHistoryOldestFirst(t *testing.T) {
	body := []byte(strings.Repeat("x", 1000))
	per := entryCost("key-000", `v`, cap(append([]byte{}, body...)))
	h := NewHistory(8, 10*per)
	for i := range 25 {
		h.Add(fmt.Sprintf("key-%03d", i), `"v"`, body)
		if s := h.Stats(); s.Bytes > s.MaxBytes {
			t.Fatalf("bytes %d over the bound %d", s.Bytes, s.MaxBytes)
		}
	}
	for i := range 25 {
		_, ok := h.Get(fmt.Sprintf("key-%03d", i), `"v"`)
		if want := i >= 15; ok != want {
			t.Errorf("key-%03d held = %v, want %v", i, ok, want)
		}
	}
	// Too large for the whole history: not stored, nothing evicted.
	h.Add("huge", `"v"`, make([]byte, 11*per))
	if s := h.Stats(); s.Entries != 10 {
		t.Errorf("entries %d after an oversized add", s.Entries)
	}
	if n := h.Purge("key-01", true); n != 5 {
		t.Errorf("purged %d keys, want 5", n)
	}
	h.Close()
	h.Add("k", `"v"`, body)
	if _, ok := h.Get("k", `"v"`); ok {
		t.Error("closed history stored")
	}
}

// TestHistoryMemoryBound measures the heap a full history holds under many
// keys: it stays within the configured size, for large bodies and for small
// ones (where the per-entry overhead dominates).
func TestHistoryMemoryBound(t *testing.T) {
	const size = 8 << 20
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	for _, c := range []struct {
		name           string
		keys, versions int
		bodyLen        int
	}{
		{"1KiB bodies, 3 versions", 60000, 3, 900},
		{"small bodies, 1 version", 200000, 1, 40},
		{"16KiB bodies, 8 versions", 2000, 8, 16 << 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := []byte(`{"id":0,"title":"` + strings.Repeat("t", c.bodyLen) + `"}`)
			before := heap()
			h := NewHistory(8, size)
			for i := range c.keys {
				key := fmt.Sprintf("example.com/articles/%d", i)
				for v := range c.versions {
					h.Add(key, fmt.Sprintf(`W/"%d-%d"`, i, v), body)
				}
			}
			s := h.Stats()
			used := int64(heap() - before)
			runtime.KeepAlive(h)
			t.Logf("%d keys × %d versions of %d bytes offered: %d keys, %d entries held, accounted %d bytes, heap %d bytes, bound %d",
				c.keys, c.versions, len(body), s.Keys, s.Entries, s.Bytes, used, size)
			if s.Bytes > size {
				t.Errorf("accounted %d bytes, bound %d", s.Bytes, size)
			}
			if used > size {
				t.Errorf("heap grew by %d bytes, bound %d", used, size)
			}
			if s.Entries < size/2/(len(body)+HistoryEntryOverhead) {
				t.Errorf("only %d entries held: the bound is far too pessimistic", s.Entries)
			}
		})
	}
}

func TestHistoryConcurrent(t *testing.T) {
	h := NewHistory(4, 64<<10)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				key := fmt.Sprintf("k%d", i%50)
				v := fmt.Sprintf(`"%d"`, (i+g)%7)
				h.Add(key, v, []byte(key+v))
				if b, ok := h.Get(key, v); ok && string(b) != key+v {
					t.Errorf("%s %s = %s", key, v, b)
					return
				}
			}
		})
	}
	wg.Wait()
	if s := h.Stats(); s.Bytes > s.MaxBytes || s.Entries > 4*50 {
		t.Errorf("stats %+v", s)
	}
}

func BenchmarkHistoryAdd(b *testing.B) {
	h := NewHistory(8, 16<<20)
	body := []byte(strings.Repeat("x", 1024))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.Add(fmt.Sprintf("k%d", i%1000), fmt.Sprintf(`"%d"`, i%16), body)
		i++
	}
}

// Resize evicts down to the new bounds: per key first (the oldest), then
// the representations seen least recently; a larger bound keeps everything.
func TestHistoryResize(t *testing.T) {
	h := NewHistory(4, 1<<20)
	body := []byte(strings.Repeat("x", 1000))
	for k := range 10 {
		for v := range 4 {
			h.Add(fmt.Sprintf("example.com/%d", k), fmt.Sprintf(`"v%d"`, v), body)
		}
	}
	if st := h.Stats(); st.Entries != 40 {
		t.Fatalf("%+v, want 40 entries", st)
	}
	h.Resize(2, 1<<20)
	for k := range 10 {
		for v := range 4 {
			_, ok := h.Get(fmt.Sprintf("example.com/%d", k), fmt.Sprintf(`"v%d"`, v))
			if want := v >= 2; ok != want {
				t.Errorf("key %d v%d held = %v, want %v", k, v, ok, want)
			}
		}
	}
	one := h.Stats().Bytes / 20
	h.Resize(2, one*5)
	st := h.Stats()
	if st.Bytes > one*5 || st.Entries != 5 || st.MaxBytes != one*5 {
		t.Errorf("after shrinking to 5 entries' bytes: %+v", st)
	}
	// The least recently seen went first: key 9's newest is the last added.
	if _, ok := h.Get("example.com/9", `"v3"`); !ok {
		t.Error("the representation seen last was evicted")
	}
	h.Resize(8, 1<<20)
	if st2 := h.Stats(); st2.Entries != 5 {
		t.Errorf("growing: %+v, want the 5 entries kept", st2)
	}
	for v := range 8 {
		h.Add("example.com/9", fmt.Sprintf(`"w%d"`, v), body)
	}
	if _, ok := h.Get("example.com/9", `"w0"`); !ok {
		t.Error("the larger per-key bound does not apply")
	}
}
