package versioncache

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// spilledSets counts the mark sets that spilled within the ttl.
func (m *Memory) spilledSets() int {
	n, now := 0, m.now()
	for i := range m.marks {
		s := &m.marks[i]
		s.mu.Lock()
		if liveMark(s.spill, now, m.ttlNanos()) {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// claimSnapshot claims key and releases it at once.
func claimSnapshot(t *testing.T, m *Memory, key string) Snapshot {
	t.Helper()
	l, snap := mustClaim(t, m, key)
	l.Release()
	return snap
}

// TestMemoryNeverSeenKeysNotDropped: in a 1MiB table that keeps dropping
// entries while keys are written through it, a key the proxy never saw is
// unknown (its write is forwarded, with no re-read), and so is a key that
// was only read; every written key whose entry was dropped is dropped (its
// next write re-reads the upstream). Before drop marks held the keys' own
// hashes, a never-seen key sharing a slot with a written key was reported
// dropped: here about a fifth of them.
func TestMemoryNeverSeenKeysNotDropped(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: MinMemoryBytes, TTL: time.Hour})
	const reads, writeEvery = 20_000, 20
	for i := range reads {
		k := fmt.Sprintf("example.com/read/%d", i)
		if _, err := m.Observe(ctx, k, m.ReadStart(k), fmt.Sprintf(`"r%d"`, i), false); err != nil {
			t.Fatal(err)
		}
		if i%writeEvery == 0 {
			write(t, m, fmt.Sprintf("example.com/written/%d", i/writeEvery), nil,
				conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: fmt.Sprintf(`"w%d"`, i)})
		}
	}
	m.cache.Wait()

	dropped := 0
	for i := range reads / writeEvery {
		k := fmt.Sprintf("example.com/written/%d", i)
		switch snap := claimSnapshot(t, m, k); {
		case snap.Dropped:
			dropped++
		case !snap.Found:
			t.Errorf("%s: written %s ago, then lost, reported unknown", k, time.Since(m.base).Round(time.Millisecond))
		}
	}
	if dropped < reads/writeEvery/2 {
		t.Fatalf("only %d of %d written keys were dropped: the test did not flood the table", dropped, reads/writeEvery)
	}
	falseDrops := 0
	const never = 5000
	for i := range never {
		if snap := claimSnapshot(t, m, fmt.Sprintf("example.com/never/%d", i)); snap.Found || snap.Dropped {
			falseDrops++
		}
	}
	readDrops, readLost := 0, 0
	for i := 0; i < reads; i += 7 {
		snap := claimSnapshot(t, m, fmt.Sprintf("example.com/read/%d", i))
		if !snap.Found {
			readLost++
		}
		if snap.Dropped {
			readDrops++
		}
	}
	t.Logf("%d of %d written keys dropped, %d read keys lost; %d mark sets of %d spilled; stats %+v",
		dropped, reads/writeEvery, readLost, m.spilledSets(), len(m.marks), m.Stats())
	if falseDrops != 0 {
		t.Errorf("%d of %d never-seen keys were reported dropped (or found)", falseDrops, never)
	}
	if readDrops != 0 {
		t.Errorf("%d keys that were only read were reported dropped", readDrops)
	}
}

// TestMemoryDropMarksSpill: when more written keys are dropped within the
// ttl than the marks hold, the sets spill, and the fallback errs on the
// safe side: every dropped key is still dropped (never-seen keys may be
// too, counted here), a purged key is unknown, and once the ttl has passed
// nothing is dropped any more.
func TestMemoryDropMarksSpill(t *testing.T) {
	ctx := context.Background()
	const ttl = 2 * time.Second
	m := newTestMemory(t, MemoryConfig{MaxBytes: MinMemoryBytes, TTL: ttl})
	marks := len(m.marks) * markWays
	n := 4 * marks
	for i := range n {
		k := fmt.Sprintf("example.com/spill/%d", i)
		if err := m.Record(ctx, k, conflict.State{Version: fmt.Sprintf(`"%d"`, i)}); err != nil {
			t.Fatal(err)
		}
		m.cache.Del(k) // dropped at once, as if evicted
	}
	m.cache.Wait()
	if m.spilledSets() == 0 {
		t.Fatalf("%d dropped keys in %d marks: no set spilled", n, marks)
	}
	for i := range n {
		k := fmt.Sprintf("example.com/spill/%d", i)
		if snap := claimSnapshot(t, m, k); !snap.Dropped {
			t.Fatalf("%s: written and dropped within the ttl, reported %+v", k, snap)
		}
	}
	falseDrops := 0
	for i := range 2000 {
		if claimSnapshot(t, m, fmt.Sprintf("example.com/never/%d", i)).Dropped {
			falseDrops++
		}
	}
	t.Logf("%d dropped keys, %d marks, %d of %d sets spilled: %d of 2000 never-seen keys reported dropped",
		n, marks, m.spilledSets(), len(m.marks), falseDrops)
	for i := range 100 {
		k := fmt.Sprintf("example.com/spill/%d", i)
		if _, err := m.Purge(ctx, k, false); err != nil {
			t.Fatal(err)
		}
		if snap := claimSnapshot(t, m, k); snap.Dropped {
			t.Fatalf("%s: purged, reported dropped", k)
		}
	}
	time.Sleep(ttl)
	for i := 0; i < n; i += 17 {
		k := fmt.Sprintf("example.com/spill/%d", i)
		if snap := claimSnapshot(t, m, k); snap.Dropped {
			t.Fatalf("%s: written longer than the ttl ago, reported dropped", k)
		}
	}
	if k := "example.com/never/0"; claimSnapshot(t, m, k).Dropped {
		t.Errorf("%s: reported dropped after the ttl", k)
	}
}

// A key stored again after its entry was dropped carries its last write in
// its new entry: if a read brings it back and the table drops it again, it
// is still dropped; a purge makes it unknown.
func TestMemoryDropMarkCarried(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/carried"
	write(t, m, key, nil, conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: `"v1"`})
	m.cache.Del(key)
	m.cache.Wait()
	if !observe(t, m, key, `"v1"`, false) {
		t.Fatal("the read was not recorded")
	}
	m.cache.Wait()
	m.cache.Del(key)
	m.cache.Wait()
	if snap := claimSnapshot(t, m, key); snap.Found || !snap.Dropped {
		t.Errorf("written, dropped, read back, dropped again: %+v, want dropped", snap)
	}
	if _, err := m.Purge(ctx, key, false); err != nil {
		t.Fatal(err)
	}
	if snap := claimSnapshot(t, m, key); snap.Found || snap.Dropped {
		t.Errorf("after a purge: %+v, want unknown", snap)
	}
}
