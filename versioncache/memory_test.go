package versioncache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

func newTestMemory(t testing.TB, cfg MemoryConfig) *Memory {
	t.Helper()
	m, err := NewMemory(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockCount is the number of claims held or waited for. It panics if a
// shard keeps more idle lock bytes than it may, or miscounts them.
func (m *Memory) lockCount() int {
	n := 0
	for i := range m.claims {
		sh := &m.claims[i]
		sh.mu.Lock()
		held, idle := 0, int64(0)
		for k, l := range sh.locks {
			if l.refs > 0 {
				held++
			} else {
				idle += idleBytes(k)
			}
		}
		if idle > idleShardBytes || idle != sh.idle {
			panic(fmt.Sprintf("claim shard %d: %d idle lock bytes, counted %d, bound %d", i, idle, sh.idle, idleShardBytes))
		}
		sh.mu.Unlock()
		n += held
	}
	return n
}

func (m *Memory) indexLen() int {
	n := 0
	for i := range m.index {
		ix := &m.index[i]
		ix.mu.Lock()
		n += len(ix.keys)
		ix.mu.Unlock()
	}
	return n
}

func (m *Memory) cachedLen() int {
	n := 0
	m.cache.IterValues(func(*entry) bool { n++; return false })
	return n
}

func mustClaim(t *testing.T, m *Memory, key string) (Lease, Snapshot) {
	t.Helper()
	l, snap, err := m.Claim(context.Background(), key, time.Second)
	if err != nil {
		t.Fatalf("Claim(%q): %v", key, err)
	}
	return l, snap
}

func mustGet(t *testing.T, m *Memory, key string) (conflict.State, bool) {
	t.Helper()
	s, ok, err := m.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return s, ok
}

func observe(t *testing.T, m *Memory, key, version string, missing bool) bool {
	t.Helper()
	ok, err := m.Observe(context.Background(), key, m.ReadStart(key), version, missing)
	if err != nil {
		t.Fatalf("Observe(%q): %v", key, err)
	}
	return ok
}

// write claims key, decides like the handler would (the snapshot's version,
// else the client's), and commits the upstream's answer.
func write(t *testing.T, m *Memory, key string, claimed []string, r conflict.WriteResult) {
	t.Helper()
	l, snap := mustClaim(t, m, key)
	based := claimed
	if snap.State.Known() {
		based = []string{snap.State.Version}
	}
	if err := l.Commit(context.Background(), snap.State.AfterWrite(based, r)); err != nil {
		t.Fatal(err)
	}
}

func sameState(a, b conflict.State) bool {
	return a.Version == b.Version && a.Deleted == b.Deleted && a.Uncertain == b.Uncertain &&
		slices.Equal(a.Superseded, b.Superseded)
}

func TestMemoryTransitions(t *testing.T) {
	put := func(v string) conflict.WriteResult {
		return conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: v}
	}
	tests := []struct {
		name  string
		steps func(t *testing.T, m *Memory, key string)
		want  conflict.State
		found bool
	}{
		{"nothing known", func(*testing.T, *Memory, string) {}, conflict.State{}, false},
		{"read learns the version", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
		}, conflict.State{Version: `"v1"`}, true},
		{"read of a newer version replaces it", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			observe(t, m, k, `"v2"`, false)
		}, conflict.State{Version: `"v2"`}, true},
		{"404 makes a tombstone and supersedes", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			observe(t, m, k, "", true)
		}, conflict.State{Deleted: true, Superseded: []string{"v1"}}, true},
		{"write supersedes the version it was based on", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			write(t, m, k, nil, put(`"v2"`))
		}, conflict.State{Version: `"v2"`, Superseded: []string{"v1"}}, true},
		{"write to an unknown key supersedes the claimed version", func(t *testing.T, m *Memory, k string) {
			write(t, m, k, []string{`"v0"`}, put(`"v1"`))
		}, conflict.State{Version: `"v1"`, Superseded: []string{"v0"}}, true},
		{"read of a superseded version brings it back (ABA)", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			write(t, m, k, nil, put(`"v2"`))
			observe(t, m, k, `"v1"`, false)
		}, conflict.State{Version: `"v1"`}, true},
		{"DELETE makes a tombstone", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			write(t, m, k, nil, conflict.WriteResult{Method: http.MethodDelete, Status: 204})
		}, conflict.State{Deleted: true, Superseded: []string{"v1"}}, true},
		{"upstream error makes it uncertain", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			write(t, m, k, nil, put(""))
			write(t, m, k, nil, conflict.WriteResult{Method: http.MethodPut, Status: 502})
		}, conflict.State{Superseded: []string{"v1"}, Uncertain: true}, true},
		{"read resolves uncertainty", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			write(t, m, k, nil, conflict.WriteResult{Method: http.MethodPut, Status: 0})
			observe(t, m, k, `"v1"`, false)
		}, conflict.State{Version: `"v1"`}, true},
		{"Record replaces", func(t *testing.T, m *Memory, k string) {
			observe(t, m, k, `"v1"`, false)
			if err := m.Record(context.Background(), k, conflict.State{Version: `"v9"`}); err != nil {
				t.Fatal(err)
			}
		}, conflict.State{Version: `"v9"`}, true},
	}
	m := newTestMemory(t, MemoryConfig{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprintf("example.com/transitions/%d", i)
			tt.steps(t, m, key)
			got, found := mustGet(t, m, key)
			if found != tt.found || !sameState(got, tt.want) {
				t.Errorf("state = %+v (found %v), want %+v (found %v)", got, found, tt.want, tt.found)
			}
			l, snap := mustClaim(t, m, key)
			l.Release()
			if snap.Found != tt.found || !sameState(snap.State, tt.want) {
				t.Errorf("Claim snapshot = %+v, want %+v", snap, tt.want)
			}
		})
	}
}

func TestMemoryLateReadNotRecorded(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/late"
	observe(t, m, key, `"v1"`, false)

	early := m.ReadStart(key) // a GET forwarded before the write
	l, _ := mustClaim(t, m, key)
	during := m.ReadStart(key) // a GET forwarded while the write is in flight
	if ok, _ := m.Observe(ctx, key, during, `"v1"`, false); ok {
		t.Error("a read answered while a write holds the key was recorded")
	}
	if err := l.Commit(ctx, conflict.State{Version: `"v2"`, Superseded: []string{"v1"}}); err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]ReadToken{"before the claim": early, "during the claim": during} {
		if ok, _ := m.Observe(ctx, key, tok, `"v1"`, false); ok {
			t.Errorf("a late read started %s was recorded", name)
		}
	}
	if s, _ := mustGet(t, m, key); s.Version != `"v2"` {
		t.Fatalf("late read resurrected %q, want \"v2\"", s.Version)
	}
	if !observe(t, m, key, `"v3"`, false) {
		t.Error("a read started after the commit was not recorded")
	}
	if s, _ := mustGet(t, m, key); s.Version != `"v3"` {
		t.Errorf("version = %q, want \"v3\"", s.Version)
	}
}

// Readers and writers race on a few keys against a simulated upstream. A
// write must find either nothing or exactly the upstream's version: a late
// read never puts back a version a write superseded.
// Readers, writers and (in "evicting") a flood of other keys that makes
// ristretto evict the written ones: a write that finds a state always finds
// the upstream's current version, whether its entry was replaced, updated
// in place (states of varying size), evicted or never admitted.
func TestMemoryConcurrentReadsAndWrites(t *testing.T) {
	for _, evicting := range []bool{false, true} {
		name := "stable"
		if evicting {
			name = "evicting"
		}
		t.Run(name, func(t *testing.T) { testConcurrentReadsAndWrites(t, evicting) })
	}
}

func testConcurrentReadsAndWrites(t *testing.T, evicting bool) {
	ctx := context.Background()
	cfg := MemoryConfig{}
	if evicting {
		cfg.MaxBytes = MinMemoryBytes
	}
	m := newTestMemory(t, cfg)
	const keys = 4
	var upstream [keys]atomic.Int64
	var commits, found atomic.Int64
	stop := time.Now().Add(300 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	if evicting {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				key := "example.com/flood/" + strconv.Itoa(i)
				_, _ = m.Observe(ctx, key, m.ReadStart(key), `"f"`, false)
			}
		})
	}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				k := (g + i) % keys
				key := "example.com/race/" + strconv.Itoa(k)
				if g%2 == 0 { // a reader
					tok := m.ReadStart(key)
					v := upstream[k].Load()
					if i%3 == 0 {
						time.Sleep(50 * time.Microsecond) // a slow response
					}
					if _, err := m.Observe(ctx, key, tok, strconv.FormatInt(v, 10), false); err != nil {
						errs <- err
						return
					}
					continue
				}
				l, snap, err := m.Claim(ctx, key, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				now := upstream[k].Load()
				if !snap.Found && now > 0 && !snap.Dropped {
					// Written within the ttl, then lost: never "unknown".
					errs <- fmt.Errorf("%s: written %d times, then found nothing and not dropped", key, now)
					l.Release()
					return
				}
				if snap.Found {
					found.Add(1)
					if snap.State.Version != strconv.FormatInt(now, 10) {
						errs <- fmt.Errorf("%s: write found version %s, upstream has %d", key, snap.State.Version, now)
						l.Release()
						return
					}
				}
				upstream[k].Store(now + 1)
				commits.Add(1)
				next := conflict.State{Version: strconv.FormatInt(now+1, 10)}
				for j := range int(now % 5) { // sizes that go up and down
					next.Superseded = append(next.Superseded, strconv.FormatInt(now-int64(j), 10))
				}
				if err := l.Commit(ctx, next); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if found.Load() == 0 {
		t.Errorf("no write found a state in %d commits", commits.Load())
	}
	if st := m.Stats(); evicting && st.Evictions == 0 {
		t.Errorf("nothing was evicted: %+v", st)
	}
}

func TestMemoryReleasedClaimKeepsOlderReadsOut(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/released"
	tok := m.ReadStart(key)
	l, _ := mustClaim(t, m, key)
	l.Release()
	if ok, _ := m.Observe(ctx, key, tok, `"v1"`, false); ok {
		t.Error("a read started before a decided write was recorded")
	}
}

func TestMemoryReadYourWritesNewKeys(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	for i := range 2000 {
		key := "example.com/ryw/" + strconv.Itoa(i)
		if i%2 == 1 {
			// A read of the new key left a Set pending in ristretto's buffer.
			observe(t, m, key, `"r"`, false)
		}
		l, _ := mustClaim(t, m, key)
		want := conflict.State{Version: `"w` + strconv.Itoa(i) + `"`}
		if err := l.Commit(ctx, want); err != nil {
			t.Fatal(err)
		}
		l2, snap := mustClaim(t, m, key)
		if !snap.Found || snap.State.Version != want.Version {
			t.Fatalf("key %d: next write saw %+v, want %q", i, snap, want.Version)
		}
		l2.Release()
		if err := m.Record(ctx, key+"/loc", want); err != nil {
			t.Fatal(err)
		}
		if s, ok := mustGet(t, m, key+"/loc"); !ok || s.Version != want.Version {
			t.Fatalf("key %d: Get after Record = %+v %v", i, s, ok)
		}
	}
}

// ristretto keeps the first of two pending Sets of one new key and refuses
// the second. Whatever the order, a write's state must win over a read's
// set just before it, and the index must end up agreeing with ristretto.
func TestMemorySettle(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	read, written := conflict.State{Version: `"read"`}, conflict.State{Version: `"written"`}
	for i := range 500 {
		key := "example.com/settle/" + strconv.Itoa(i)
		h := hashKey(key)
		sh := m.claimShard(h)
		readFirst := i%2 == 0
		m.guard.RLock()
		sh.mu.Lock()
		var w *entry
		if readFirst {
			m.setLocked(key, h, &stored{state: read, at: m.now()})
			w, _ = m.setLocked(key, h, &stored{state: written, at: m.now(), wrote: m.now()})
		} else {
			w, _ = m.setLocked(key, h, &stored{state: written, at: m.now(), wrote: m.now()})
			m.setLocked(key, h, &stored{state: read, at: m.now()}) // a read that came after the write
		}
		sh.mu.Unlock()
		m.settle(sh, key, h, w, 0)
		m.guard.RUnlock()

		s, ok := mustGet(t, m, key)
		switch {
		case !ok:
			t.Fatalf("%d: the write's state was lost", i)
		case readFirst && s.Version != written.Version:
			t.Fatalf("%d: a read set before the write won: %+v", i, s)
		}
		m.cache.Wait()
		held, _ := m.cache.Get(key)
		if ix := m.indexed(key, h); held != ix {
			t.Fatalf("%d: ristretto holds %+v, the index %+v", i, held, ix)
		}
	}
}

func TestMemoryObserveNewKeyTwice(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	for i := range 500 {
		key := "example.com/twice/" + strconv.Itoa(i)
		observe(t, m, key, `"v1"`, false)
		observe(t, m, key, `"v2"`, false) // the first Set is likely still pending
		if s, ok := mustGet(t, m, key); !ok || s.Version != `"v2"` {
			t.Fatalf("%d: state %+v (found %v), want \"v2\"", i, s, ok)
		}
		m.cache.Wait()
		held, _ := m.cache.Get(key)
		if ix := m.indexed(key, hashKey(key)); held != ix {
			t.Fatalf("%d: ristretto holds %+v, the index %+v", i, held, ix)
		}
	}
}

func TestMemoryDropped(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})

	t.Run("never written", func(t *testing.T) {
		l, snap := mustClaim(t, m, "example.com/recent/none")
		defer l.Release()
		if snap.Found || snap.Dropped {
			t.Errorf("snapshot = %+v, want unknown (not dropped)", snap)
		}
	})
	t.Run("only read", func(t *testing.T) {
		const key = "example.com/recent/read"
		observe(t, m, key, `"v1"`, false)
		m.cache.Wait()
		m.cache.Del(key)
		l, snap := mustClaim(t, m, key)
		defer l.Release()
		if snap.Found || snap.Dropped {
			t.Errorf("snapshot = %+v, want unknown (not dropped)", snap)
		}
	})
	t.Run("deleted behind the store's back", func(t *testing.T) {
		for _, how := range []string{"commit", "record"} {
			key := "example.com/recent/" + how
			if how == "commit" {
				write(t, m, key, nil, conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: `"v1"`})
			} else if err := m.Record(ctx, key, conflict.State{Version: `"v1"`}); err != nil {
				t.Fatal(err)
			}
			m.cache.Del(key)
			l, snap := mustClaim(t, m, key)
			if snap.Found || !snap.Dropped {
				t.Errorf("%s: snapshot = %+v, want dropped", how, snap)
			}
			l.Release()
			// A released claim does not forget that a write stored something.
			l, snap = mustClaim(t, m, key)
			if !snap.Dropped {
				t.Errorf("%s: after a released claim, snapshot = %+v, want dropped", how, snap)
			}
			l.Release()
		}
	})
	t.Run("refused by the cache", func(t *testing.T) {
		const key = "example.com/recent/huge"
		// An entry larger than the whole cache is never admitted.
		huge := conflict.State{Version: `"` + strings.Repeat("x", 2<<20) + `"`}
		small := newTestMemory(t, MemoryConfig{MaxBytes: MinMemoryBytes})
		l, _ := mustClaim(t, small, key)
		if err := l.Commit(ctx, huge); err != nil {
			t.Fatal(err)
		}
		l, snap := mustClaim(t, small, key)
		defer l.Release()
		if snap.Found || !snap.Dropped {
			t.Errorf("snapshot = %+v, want dropped", snap)
		}
		if st := small.Stats(); st.Rejections == 0 {
			t.Errorf("Stats = %+v, want a rejection", st)
		}
	})
}

// A write whose state fits in what its key's entry was charged replaces
// the state in place, without a Set: the next write and reader see it at
// once, ristretto keeps holding the same entry, and the charge stays. A
// state that needs more is Set as a new entry, charged its size. An entry
// ristretto lets go of after in-place updates leaves the key unknown, and
// the next write re-reads (Dropped).
func TestMemoryInPlaceUpdates(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/in-place"
	h := hashKey(key)
	if err := m.Record(ctx, key, conflict.State{Version: `"v0"`, Live: true}); err != nil {
		t.Fatal(err)
	}
	m.cache.Wait()
	held, _ := m.cache.Get(key)
	bytes := m.Stats().Bytes
	if held == nil || held != m.indexed(key, h) {
		t.Fatalf("ristretto holds %p, the index %p", held, m.indexed(key, h))
	}

	s := conflict.State{Version: `"v0"`, Live: true}
	for i := 1; i <= 20; i++ {
		l, snap := mustClaim(t, m, key)
		if !snap.Found || snap.State.Version != s.Version {
			t.Fatalf("write %d decided on %+v, want %q", i, snap, s.Version)
		}
		// Versions of one length, as most upstreams give: the state stops
		// growing once the superseded list is full.
		s = snap.State.AfterWrite([]string{s.Version}, conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: fmt.Sprintf(`"v%d"`, i%10)})
		if err := l.Commit(ctx, s); err != nil {
			t.Fatal(err)
		}
		if got, ok := mustGet(t, m, key); !ok || !reflect.DeepEqual(got, s) {
			t.Fatalf("after write %d: Get = %+v %v, want %+v", i, got, ok, s)
		}
	}
	m.cache.Wait()
	e := m.indexed(key, h)
	if now, _ := m.cache.Get(key); now != e {
		t.Fatalf("ristretto holds %p, the index %p", now, e)
	}
	if e.charged < cost(key, &s) {
		t.Errorf("entry charged %d bytes, its state takes %d", e.charged, cost(key, &s))
	}
	grew := m.Stats().Bytes - bytes
	if want := cost(key, &s) - cost(key, &conflict.State{Version: `"v0"`}); grew < want {
		t.Errorf("table grew by %d bytes, the state by %d", grew, want)
	}

	// Same size: in place.
	before := m.Stats().Bytes
	l, _ := mustClaim(t, m, key)
	s2 := s
	s2.Version = `"v9"`
	if err := l.Commit(ctx, s2); err != nil {
		t.Fatal(err)
	}
	m.cache.Wait()
	if e2 := m.indexed(key, h); e2 != e {
		t.Errorf("a write of the same size stored a new entry")
	}
	if after := m.Stats().Bytes; after != before {
		t.Errorf("a write of the same size changed the charge: %d -> %d bytes", before, after)
	}

	// Larger: a new entry, charged for it.
	l, _ = mustClaim(t, m, key)
	big := s
	big.Version = `"` + strings.Repeat("x", 4096) + `"`
	if err := l.Commit(ctx, big); err != nil {
		t.Fatal(err)
	}
	m.cache.Wait()
	e3 := m.indexed(key, h)
	if held, _ := m.cache.Get(key); e3 == e || held != e3 {
		t.Fatalf("a larger state: index %p (was %p), ristretto %p", e3, e, held)
	}
	if grew := m.Stats().Bytes - before; grew < 4096 {
		t.Errorf("a 4KiB larger state grew the table by %d bytes", grew)
	}

	// Let go of by ristretto after an update in place: dropped.
	l, _ = mustClaim(t, m, key)
	if err := l.Commit(ctx, big); err != nil {
		t.Fatal(err)
	}
	m.cache.Del(key)
	m.cache.Wait()
	l, snap := mustClaim(t, m, key)
	defer l.Release()
	if snap.Found || !snap.Dropped {
		t.Errorf("after the entry left the cache: snapshot %+v, want dropped", snap)
	}
}

// TestMemoryWrittenKeyRoom: the first write to a key that a read learned
// stores a new entry, charged with room for its superseded list to fill;
// the writes after it change that entry in place (no ristretto Set), and
// the table's bytes stay what that entry was charged.
func TestMemoryWrittenKeyRoom(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/room"
	h := hashKey(key)
	if err := m.Record(ctx, key, conflict.State{Version: `"v00"`, Live: true}); err != nil {
		t.Fatal(err)
	}
	m.cache.Wait()
	read := m.indexed(key, h)
	var first *entry
	var bytes int64
	s := conflict.State{Version: `"v00"`, Live: true}
	for i := 1; i <= 2*conflict.MaxSuperseded; i++ {
		l, snap := mustClaim(t, m, key)
		s = snap.State.AfterWrite([]string{s.Version}, conflict.WriteResult{Method: http.MethodPut, Status: 204, Version: fmt.Sprintf(`"v%02d"`, i)})
		if err := l.Commit(ctx, s); err != nil {
			t.Fatal(err)
		}
		m.cache.Wait()
		e := m.indexed(key, h)
		if i == 1 {
			if e == read {
				t.Fatal("the first write changed the read's entry in place: it has no room for superseded versions")
			}
			first, bytes = e, m.Stats().Bytes
			continue
		}
		if e != first {
			t.Fatalf("write %d (superseded %d) stored a new entry", i, len(s.Superseded))
		}
		if e.charged < cost(key, &s) {
			t.Fatalf("write %d: entry charged %d bytes, its state takes %d", i, e.charged, cost(key, &s))
		}
		if got := m.Stats().Bytes; got != bytes {
			t.Fatalf("write %d changed the table's bytes: %d -> %d", i, bytes, got)
		}
	}
	if len(s.Superseded) != conflict.MaxSuperseded {
		t.Fatalf("superseded %d, want full", len(s.Superseded))
	}
}

// TestCostCountsVariants: a negotiated resource's variants are charged.
func TestCostCountsVariants(t *testing.T) {
	one := conflict.State{Version: `"a"`, Live: true}
	many := one
	for i := range conflict.MaxVariants {
		many.Variants = append(many.Variants, conflict.Variant{ID: fmt.Sprintf("%016x", i), Version: fmt.Sprintf(`"variant-%d"`, i)})
	}
	if d := cost("k", &many) - cost("k", &one); d < int64(conflict.MaxVariants)*(16+16+16) {
		t.Errorf("%d variants add %d bytes to the cost", conflict.MaxVariants, d)
	}
}

func TestMemoryClaimTimeout(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/timeout"
	if err := m.Record(ctx, key, conflict.State{Version: `"v1"`}); err != nil {
		t.Fatal(err)
	}
	l, _ := mustClaim(t, m, key)
	start := time.Now()
	_, snap, err := m.Claim(ctx, key, 50*time.Millisecond)
	if !errors.Is(err, ErrClaimTimeout) {
		t.Fatalf("err = %v, want ErrClaimTimeout", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", d)
	}
	if snap.State.Version != `"v1"` {
		t.Errorf("timeout snapshot = %+v, want the state seen without the claim", snap)
	}
	if _, _, err := m.Claim(ctx, key, 0); !errors.Is(err, ErrClaimTimeout) {
		t.Errorf("zero timeout: err = %v, want ErrClaimTimeout", err)
	}
	l.Release()
	if n := m.lockCount(); n != 0 {
		t.Errorf("%d locks left in the table", n)
	}
	l, _ = mustClaim(t, m, key)
	l.Release()
}

func TestMemoryClaimContext(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/ctx"
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := m.Claim(canceled, key, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: err = %v", err)
	}

	l, _ := mustClaim(t, m, key)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, _, err := m.Claim(ctx, key, 10*time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	l.Release()
	if n := m.lockCount(); n != 0 {
		t.Errorf("%d locks left in the table", n)
	}
}

// Writes to one key are served in turn, each deciding on what the previous
// one committed: no lost update.
func TestMemoryClaimSerializes(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key, writers = "example.com/counter", 32
	var wg sync.WaitGroup
	seen := make([]int, writers)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, snap, err := m.Claim(ctx, key, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			n := 0
			if snap.Found {
				n, _ = strconv.Atoi(snap.State.Version)
			}
			seen[w] = n
			time.Sleep(time.Millisecond) // the upstream exchange
			errs <- l.Commit(ctx, conflict.State{Version: strconv.Itoa(n + 1)})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if s, _ := mustGet(t, m, key); s.Version != strconv.Itoa(writers) {
		t.Errorf("final version %q, want %d (a lost update)", s.Version, writers)
	}
	got := make(map[int]bool)
	for _, n := range seen {
		got[n] = true
	}
	if len(got) != writers {
		t.Errorf("writers saw %d distinct states, want %d", len(got), writers)
	}
	if n := m.lockCount(); n != 0 {
		t.Errorf("%d locks left in the table", n)
	}
}

func TestMemoryLeaseOnce(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/once"
	l, _ := mustClaim(t, m, key)
	if err := l.Commit(ctx, conflict.State{Version: `"v1"`}); err != nil {
		t.Fatal(err)
	}
	l2, _ := mustClaim(t, m, key) // held by someone else now
	if err := l.Commit(ctx, conflict.State{Version: `"v2"`}); err != nil {
		t.Fatal(err)
	}
	l.Release()
	if s, _ := mustGet(t, m, key); s.Version != `"v1"` {
		t.Errorf("a second Commit changed the state to %q", s.Version)
	}
	if _, _, err := m.Claim(ctx, key, 0); !errors.Is(err, ErrClaimTimeout) {
		t.Errorf("a second Release freed another write's claim: err = %v", err)
	}
	l2.Release()
	l2.Release()
	if n := m.lockCount(); n != 0 {
		t.Errorf("%d locks left in the table", n)
	}
}

func TestMemoryObserveFastPath(t *testing.T) {
	m := newTestMemory(t, MemoryConfig{})
	const key = "example.com/hot"
	observe(t, m, key, `"v1"`, false)
	m.cache.Wait()
	before, _ := m.cache.Get(key)
	if !observe(t, m, key, `"v1"`, false) {
		t.Fatal("unchanged read not reported as recorded")
	}
	if after, _ := m.cache.Get(key); after != before {
		t.Error("an unchanged read stored a new entry")
	}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = m.Observe(ctx, key, m.ReadStart(key), `"v1"`, false)
	})
	if allocs != 0 {
		t.Errorf("unchanged read allocates %v times", allocs)
	}
}

func TestMemoryTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	m := newTestMemory(t, MemoryConfig{TTL: ttl})
	const key = "example.com/ttl"
	write(t, m, key, nil, conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: `"v1"`})
	if _, ok := mustGet(t, m, key); !ok {
		t.Fatal("not found right after the write")
	}
	eventually(t, "the entry to expire", func() bool {
		_, ok := mustGet(t, m, key)
		return !ok
	})
	l, snap := mustClaim(t, m, key)
	l.Release()
	if snap.Found || snap.Dropped {
		t.Errorf("after the ttl, snapshot = %+v, want unknown (not dropped)", snap)
	}
	if items, _, _ := m.List(ctx, "", "", 10); len(items) != 0 {
		t.Errorf("List shows expired keys: %+v", items)
	}
	// An expired entry is invisible at once; its memory stays counted within
	// MaxBytes until eviction reclaims it (no ristretto TTL: see setLocked).
}

func TestMemoryBound(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: MinMemoryBytes})
	for i := range 30000 {
		key := fmt.Sprintf("example.com/bound/%06d", i)
		var err error
		if i%3 == 0 {
			_, err = m.Observe(ctx, key, m.ReadStart(key), `W/"`+strconv.Itoa(i)+`-abcdef"`, false)
		} else {
			err = m.Record(ctx, key, conflict.State{Version: `"` + strconv.Itoa(i) + `"`, Superseded: []string{"0", "1"}})
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%500 == 0 {
			if st := m.Stats(); st.Bytes > st.MaxBytes {
				t.Fatalf("after %d keys: %d bytes in use, bound %d", i, st.Bytes, st.MaxBytes)
			}
		}
	}
	m.cache.Wait()
	st := m.Stats()
	if st.Bytes > MinMemoryBytes {
		t.Errorf("%d bytes in use, bound %d", st.Bytes, MinMemoryBytes)
	}
	if st.Evictions+st.Rejections == 0 || st.Entries == 0 || st.Entries >= 30000 {
		t.Errorf("Stats = %+v: want a full cache that evicted or refused keys", st)
	}
	eventually(t, "the key index to match the cache", func() bool {
		m.cache.Wait()
		return m.indexLen() == m.cachedLen() && int(m.Stats().Entries) == m.indexLen()
	})
	t.Logf("%+v, %d cached", st, m.cachedLen())
}

func TestMemoryPurge(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	for _, k := range []string{"h/a", "h/x/1", "h/x/2", "h/x/3", "h/y/1"} {
		if err := m.Record(ctx, k, conflict.State{Version: `"` + k + `"`}); err != nil {
			t.Fatal(err)
		}
	}
	inflight := m.ReadStart("h/a")
	if n, err := m.Purge(ctx, "h/a", false); n != 1 || err != nil {
		t.Fatalf("Purge(h/a) = %d, %v", n, err)
	}
	if _, ok := mustGet(t, m, "h/a"); ok {
		t.Error("h/a still known after purge")
	}
	l, snap := mustClaim(t, m, "h/a")
	l.Release()
	if snap.Found || snap.Dropped {
		t.Errorf("after purge, snapshot = %+v, want unknown (not dropped)", snap)
	}
	if ok, _ := m.Observe(ctx, "h/a", inflight, `"old"`, false); ok {
		t.Error("a read in flight during the purge was recorded")
	}
	if n, _ := m.Purge(ctx, "h/a", false); n != 0 {
		t.Errorf("second Purge(h/a) = %d, want 0", n)
	}

	if n, err := m.Purge(ctx, "h/x/", true); n != 3 || err != nil {
		t.Fatalf("Purge(h/x/, prefix) = %d, %v", n, err)
	}
	items, _, _ := m.List(ctx, "h/", "", 10)
	if len(items) != 1 || items[0].Key != "h/y/1" {
		t.Errorf("after prefix purge List = %+v, want only h/y/1", items)
	}
	for _, k := range []string{"h/x/1", "h/x/2", "h/x/3"} {
		l, snap := mustClaim(t, m, k)
		l.Release()
		if snap.Found || snap.Dropped {
			t.Errorf("%s after purge: snapshot = %+v", k, snap)
		}
	}
}

func TestMemoryList(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{})
	var want []string
	for i := 24; i >= 0; i-- {
		k := fmt.Sprintf("h/k%02d", i)
		want = append([]string{k}, want...)
		observe(t, m, k, `"`+k+`"`, false)
	}
	observe(t, m, "h", `"root"`, false)
	observe(t, m, "other/k", `"x"`, false)
	m.cache.Wait()

	var got []string
	after, pages := "", 0
	for {
		items, next, err := m.List(ctx, "h/", after, 10)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range items {
			got = append(got, it.Key)
			if it.State.Version != `"`+it.Key+`"` {
				t.Errorf("%s: state %+v", it.Key, it.State)
			}
		}
		if next == "" {
			break
		}
		if next != items[len(items)-1].Key {
			t.Errorf("cursor %q is not the page's last key", next)
		}
		after = next
	}
	if pages != 3 || !reflect.DeepEqual(got, want) {
		t.Errorf("%d pages: %v\nwant %v", pages, got, want)
	}
	if items, next, _ := m.List(ctx, "", "", 0); len(items) != 27 || next != "" {
		t.Errorf("default limit: %d items, next %q", len(items), next)
	}
}

func TestMemoryClose(t *testing.T) {
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("example.com/close/%d/%d", g, i%50)
				switch i % 6 {
				case 0:
					_, _ = m.Observe(ctx, key, m.ReadStart(key), strconv.Itoa(i), false)
				case 1:
					if l, _, err := m.Claim(ctx, key, 10*time.Millisecond); err == nil {
						_ = l.Commit(ctx, conflict.State{Version: strconv.Itoa(i)})
					}
				case 2:
					_ = m.Record(ctx, key+"/new/"+strconv.Itoa(i), conflict.State{Version: "x"})
				case 3:
					_, _, _ = m.Get(ctx, key)
				case 4:
					_, _, _ = m.List(ctx, "example.com/close/", "", 5)
					_ = m.Stats()
				case 5:
					_, _ = m.Purge(ctx, key, i%12 == 5)
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := m.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, err := m.Observe(ctx, "k", m.ReadStart("k"), "v", false); !errors.Is(err, ErrClosed) {
		t.Errorf("Observe after Close: %v", err)
	}
	if _, _, err := m.Claim(ctx, "k", time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Claim after Close: %v", err)
	}
	if err := m.Record(ctx, "k", conflict.State{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Record after Close: %v", err)
	}
	if _, err := m.Purge(ctx, "k", true); !errors.Is(err, ErrClosed) {
		t.Errorf("Purge after Close: %v", err)
	}
	if _, _, err := m.List(ctx, "", "", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if st := m.Stats(); st != (Stats{}) {
		t.Errorf("Stats after Close = %+v", st)
	}
}

func TestMemoryCloseWhileClaimed(t *testing.T) {
	ctx := context.Background()
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := mustClaim(t, m, "k")
	done := make(chan error)
	go func() {
		_, _, err := m.Claim(ctx, "k", 10*time.Second)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	_ = m.Close()
	if err := l.Commit(ctx, conflict.State{Version: "v"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("waiting Claim after Close: %v", err)
	}
	if n := m.lockCount(); n != 0 {
		t.Errorf("%d locks left in the table", n)
	}
}

func TestNewMemoryConfig(t *testing.T) {
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if st := m.Stats(); st.MaxBytes != DefaultMemoryBytes || st.Bytes <= 0 || st.Bytes > DefaultMemoryBytes/8 {
		t.Errorf("empty default store: %+v", st)
	}
	if m.ttlNanos() != int64(DefaultTTL) {
		t.Errorf("ttl = %v", time.Duration(m.ttlNanos()))
	}
	for _, cfg := range []MemoryConfig{{MaxBytes: MinMemoryBytes - 1}, {MaxBytes: -1}, {TTL: -time.Second}} {
		if m, err := NewMemory(cfg); err == nil {
			m.Close()
			t.Errorf("NewMemory(%+v) accepted", cfg)
		}
	}
}

func BenchmarkObserveHot(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	_, _ = m.Observe(ctx, key, m.ReadStart(key), `"v1"`, false)
	m.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if ok, _ := m.Observe(ctx, key, m.ReadStart(key), `"v1"`, false); !ok {
			b.Fatal("not recorded")
		}
	}
}

func BenchmarkObserveHotParallel(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	ctx := context.Background()
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "example.com/articles/" + strconv.Itoa(i)
		_, _ = m.Observe(ctx, keys[i], m.ReadStart(keys[i]), `"v1"`, false)
	}
	m.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i&63]
			_, _ = m.Observe(ctx, k, m.ReadStart(k), `"v1"`, false)
			i++
		}
	})
}

func BenchmarkObserveDistinctKeys(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	ctx := context.Background()
	keys := make([]string, 1<<18)
	for i := range keys {
		keys[i] = "example.com/articles/" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		k := keys[i&(len(keys)-1)]
		_, _ = m.Observe(ctx, k, m.ReadStart(k), `"v1"`, false)
		i++
	}
}

// BenchmarkClaimCommit is a write to a known key: claim, then commit a new
// state (computed beforehand: that is the handler's work, not the store's).
func BenchmarkClaimCommit(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	s := conflict.State{Version: `"v0"`}
	if err := m.Record(ctx, key, s); err != nil {
		b.Fatal(err)
	}
	var states [4]conflict.State
	for i := range states {
		r := conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: `"v` + strconv.Itoa(i+1) + `"`}
		s = s.AfterWrite([]string{s.Version}, r)
		states[i] = s
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		l, snap, err := m.Claim(ctx, key, time.Second)
		if err != nil || !snap.Found {
			b.Fatal(err, snap)
		}
		if err := l.Commit(ctx, states[i&3]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkWritePath is the whole of a write's decision and bookkeeping as
// the handler makes it, upstream aside: parse If-Match, claim the key,
// decide on its state, compute the state after the write and commit it.
// Each write is based on the version the previous one left.
func BenchmarkWritePath(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	var versions [4]string
	var headers [4]http.Header
	for i := range versions {
		versions[i] = `"v` + strconv.Itoa(i) + `"`
		headers[i] = http.Header{"If-Match": {versions[i]}}
	}
	if err := m.Record(ctx, key, conflict.State{Version: versions[0], Live: true}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c, err := conflict.ParsePrecondition(headers[i&3], conflict.SchemeETag, "")
		if err != nil {
			b.Fatal(err)
		}
		l, snap, err := m.Claim(ctx, key, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if d := conflict.Decide(snap.State, c, conflict.Policy{}); !d.Forward() {
			b.Fatalf("write %d rejected: %+v on %+v", i, d, snap.State)
		}
		r := conflict.WriteResult{Method: http.MethodPut, Status: http.StatusOK, Version: versions[(i+1)&3]}
		if err := l.Commit(ctx, snap.State.AfterWrite([]string{snap.State.Version}, r)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkRistrettoUpdate is the floor under a commit: one SetWithTTL of a
// key ristretto holds, nothing else.
func BenchmarkRistrettoUpdate(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	const key = "example.com/articles/1"
	s := conflict.State{Version: `"v0"`}
	e := &entry{key: key, charged: cost(key, &s)}
	m.cache.SetWithTTL(key, e, e.charged, time.Minute)
	m.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.cache.SetWithTTL(key, e, cost(key, &s), time.Minute)
	}
}

func BenchmarkGet(b *testing.B) {
	m := newTestMemory(b, MemoryConfig{})
	ctx := context.Background()
	const key = "example.com/articles/1"
	if err := m.Record(ctx, key, conflict.State{Version: `"v0"`}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, ok, _ := m.Get(ctx, key); !ok {
			b.Fatal("miss")
		}
	}
}

// Resize keeps the table: a smaller cache_size evicts down to the new bound
// (the keys it drops are reported dropped, the last stored are kept), a
// larger one keeps every entry, held write locks stay held, and a ttl change
// applies to the entries already stored.
func TestMemoryResize(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: 8 << 20, TTL: time.Hour})
	const n = 12000
	key := func(i int) string { return fmt.Sprintf("example.com/resize/%06d", i) }
	for i := range n {
		if err := m.Record(ctx, key(i), conflict.State{Version: `"` + strconv.Itoa(i) + `"`, Live: true}); err != nil {
			t.Fatal(err)
		}
	}
	m.cache.Wait()
	before := m.Stats()
	if before.Entries != n {
		t.Fatalf("before: %d entries, want %d", before.Entries, n)
	}

	// A write holds a key across the resize.
	held, _ := mustClaim(t, m, key(n-1))

	if err := m.Resize(MinMemoryBytes, time.Hour); err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if st.MaxBytes != MinMemoryBytes || st.Bytes > MinMemoryBytes {
		t.Errorf("after shrinking: %d bytes in use, bound %d (MaxBytes %d)", st.Bytes, MinMemoryBytes, st.MaxBytes)
	}
	if st.Entries == 0 || st.Entries >= n/2 {
		t.Errorf("after shrinking: %d entries of %d", st.Entries, n)
	}
	if m.indexLen() != m.cachedLen() {
		t.Errorf("index %d keys, cache %d", m.indexLen(), m.cachedLen())
	}
	if _, _, err := m.Claim(ctx, key(n-1), 20*time.Millisecond); err != ErrClaimTimeout {
		t.Errorf("claim of a key held across the resize: %v, want ErrClaimTimeout", err)
	}
	held.Release()
	found, dropped := 0, 0
	for i := range n {
		l, snap, err := m.Claim(ctx, key(i), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case snap.Found:
			found++
			if snap.State.Version != `"`+strconv.Itoa(i)+`"` {
				t.Fatalf("%s: %+v", key(i), snap.State)
			}
		case snap.Dropped:
			dropped++
		default:
			t.Fatalf("%s: unknown after shrinking, want found or dropped", key(i))
		}
		l.Release()
		if i == n-1 && !snap.Found {
			t.Errorf("the key stored last was not kept")
		}
	}
	if found != int(st.Entries) || found+dropped != n {
		t.Errorf("found %d, dropped %d, entries %d", found, dropped, st.Entries)
	}

	// Growing keeps every entry.
	if err := m.Resize(16<<20, time.Hour); err != nil {
		t.Fatal(err)
	}
	if st2 := m.Stats(); st2.Entries != st.Entries || st2.MaxBytes != 16<<20 || st2.Bytes > st2.MaxBytes {
		t.Errorf("after growing: %+v, want the %d entries kept", st2, st.Entries)
	}
	if _, ok, _ := m.Get(ctx, key(n-1)); !ok {
		t.Error("after growing: the last key is gone")
	}

	// A shorter ttl applies to what is stored already; a longer one again.
	if err := m.Resize(16<<20, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(40 * time.Millisecond)
	if _, ok, _ := m.Get(ctx, key(n-1)); ok {
		t.Error("an entry older than the new, shorter ttl is still trusted")
	}
	l, snap := mustClaim(t, m, key(0))
	if snap.Found || snap.Dropped {
		t.Errorf("a key dropped longer ago than the new ttl: %+v, want unknown", snap)
	}
	l.Release()
	if err := m.Resize(16<<20, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := m.Get(ctx, key(n-1)); !ok {
		t.Error("with the longer ttl again, the entry is not trusted")
	}
	if err := m.Resize(MinMemoryBytes-1, time.Hour); err == nil {
		t.Error("Resize below the minimum succeeded")
	}
	_ = m.lockCount()
}

// Resize under load: writes, reads and claims of other keys go on while the
// size changes back and forth (run with -race), every write serializes, and
// the table stays consistent.
func TestMemoryResizeConcurrent(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: 4 << 20})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var counter, writes atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("example.com/load/%d/%d", g, i%3000)
				observe(t, m, k, `"r"`, false)
				if _, _, err := m.Get(ctx, k); err != nil {
					t.Error(err)
					return
				}
				l, _, err := m.Claim(ctx, "example.com/load/counter", 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				v := counter.Load()
				counter.Store(v + 1) // a lost update shows as a short count
				if err := l.Commit(ctx, conflict.State{Version: `"` + strconv.FormatInt(v+1, 10) + `"`}); err != nil {
					t.Error(err)
					return
				}
				writes.Add(1)
			}
		}()
	}
	for i := range 6 {
		time.Sleep(30 * time.Millisecond)
		if err := m.Resize(int64(1+i%3)<<20, time.Duration(1+i%2)*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if counter.Load() != writes.Load() {
		t.Errorf("counter %d after %d writes", counter.Load(), writes.Load())
	}
	eventually(t, "the key index to match the cache", func() bool {
		m.cache.Wait()
		return m.indexLen() == m.cachedLen() && int(m.Stats().Entries) == m.indexLen()
	})
	if st := m.Stats(); st.Bytes > st.MaxBytes {
		t.Errorf("%d bytes in use, bound %d", st.Bytes, st.MaxBytes)
	}
	_ = m.lockCount()
}

// Idle write locks keep no long keys: after writes to many distinct long
// keys the claim table holds no idle lock beyond its byte bound.
func TestMemoryIdleLocksBounded(t *testing.T) {
	ctx := context.Background()
	m := newTestMemory(t, MemoryConfig{MaxBytes: 8 << 20})
	long := strings.Repeat("p", 100<<10)
	for i := range 2000 {
		key := fmt.Sprintf("example.com/%d/%s", i, long)
		l, _, err := m.Claim(ctx, key, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Commit(ctx, conflict.State{Version: `"1"`, Live: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2000 {
		write(t, m, fmt.Sprintf("example.com/short/%d", i), nil, conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: `"v1"`})
	}
	if n := m.lockCount(); n != 0 { // panics past the bound
		t.Errorf("%d locks held", n)
	}
	idle := 0
	for i := range m.claims {
		for k := range m.claims[i].locks {
			if len(k) > idleShardBytes {
				t.Fatalf("an idle lock keeps a %d-byte key", len(k))
			}
			idle++
		}
	}
	if idle == 0 {
		t.Error("no idle lock kept for short keys")
	}
}
