package versioncache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// The memory store's write claims: a table of per-key locks in shards,
// Claim, and the Lease that releases them.

// keyLock is a key's write claim, present while a write holds or waits for
// it. The claim is a token: its holder has it, or it sits in ch on its way
// to the next waiter. A lock nobody holds (refs == 0) may stay in its
// shard's table for the next write of the key, sparing a map insert and
// delete per write, as long as the shard's idle locks, their key strings
// included, stay within idleShardBytes (memory_cost.go): a long key's lock
// leaves the table as soon as nobody holds it, so idle locks never keep
// more than shards*idleShardBytes, whatever the keys' length.
type keyLock struct {
	refs int           // holder + waiters
	ch   chan struct{} // created by the first waiter
}

type claimShard struct {
	mu    sync.Mutex
	locks map[string]*keyLock
	idle  int64    // bytes of the locks with refs == 0 (idleBytes)
	_     [40]byte // keep shards on separate cache lines
}

// held reports whether a write holds or waits for the key's claim.
func (sh *claimShard) held(key string) bool {
	l := sh.locks[key]
	return l != nil && l.refs > 0
}

// Claim implements Store.
func (m *Memory) Claim(ctx context.Context, key string, timeout time.Duration) (Lease, Snapshot, error) {
	if m.closed.Load() {
		return nil, Snapshot{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, Snapshot{}, err
	}
	h := hashKey(key)
	ls := &memoryLease{m: m, key: key, h: h}
	sh := m.claimShard(h)
	sh.mu.Lock()
	ls.l = sh.locks[key]
	if ls.l == nil || ls.l.refs == 0 {
		if ls.l == nil {
			ls.l = &keyLock{}
			sh.locks[key] = ls.l
		} else {
			sh.idle -= idleBytes(key)
		}
		ls.l.refs = 1
		now := m.fenceClaim(h)
		sh.mu.Unlock()
		return m.claimed(ls, now)
	}
	ls.l.refs++
	if ls.l.ch == nil {
		ls.l.ch = make(chan struct{}, 1)
	}
	sh.mu.Unlock()

	if err := m.await(ctx, sh, key, ls.l, timeout); err != nil {
		var snap Snapshot
		if err == ErrClaimTimeout {
			snap.State, snap.Found, _ = m.Get(ctx, key)
		}
		return nil, snap, err
	}
	sh.mu.Lock()
	now := m.fenceClaim(h)
	sh.mu.Unlock()
	return m.claimed(ls, now)
}

// fenceClaim moves the key's read fence to the decision of a write, and
// returns its time. The claim shard mutex must be held.
func (m *Memory) fenceClaim(h uint64) int64 {
	now := m.now()
	*m.fence(h) = now
	return now
}

// await waits for the token of l, which the caller has joined as a waiter.
func (m *Memory) await(ctx context.Context, sh *claimShard, key string, l *keyLock, timeout time.Duration) error {
	var err error
	if timeout <= 0 {
		select {
		case <-l.ch:
			return nil
		default:
			err = ErrClaimTimeout
		}
	} else {
		t := time.NewTimer(timeout)
		select {
		case <-l.ch:
			t.Stop()
			return nil
		case <-t.C:
			err = ErrClaimTimeout
		case <-ctx.Done():
			t.Stop()
			err = ctx.Err()
		}
	}
	sh.mu.Lock()
	select {
	case <-l.ch:
		// Handed over just as the wait ended: pass it on.
		releaseLocked(sh, key, l)
	default:
		l.refs-- // the holder still counts, so refs stays > 0
	}
	sh.mu.Unlock()
	return err
}

// releaseLocked gives up a held claim of key: to the next waiter, or the
// lock stays idle in the table; a lock whose key is too long to be kept
// idle leaves it at once, and past idleShardBytes all the idle ones do.
// The shard mutex must be held.
func releaseLocked(sh *claimShard, key string, l *keyLock) {
	l.refs--
	if l.refs > 0 {
		l.ch <- struct{}{} // never blocks: there is one token
		return
	}
	c := idleBytes(key)
	if c > idleShardBytes {
		delete(sh.locks, key)
		return
	}
	if sh.idle += c; sh.idle > idleShardBytes {
		for k, x := range sh.locks {
			if x.refs == 0 {
				delete(sh.locks, k)
			}
		}
		sh.idle = 0
	}
}

// claimed returns the snapshot of a claim just acquired.
func (m *Memory) claimed(ls *memoryLease, now int64) (Lease, Snapshot, error) {
	if m.closed.Load() {
		ls.Release()
		return nil, Snapshot{}, ErrClosed
	}
	v, dropped := m.lookup(ls.key, ls.h, now)
	m.count(v != nil)
	m.touch(ls.key)
	if v != nil {
		return ls, Snapshot{State: v.state, Found: true}, nil
	}
	return ls, Snapshot{Dropped: dropped}, nil
}

type memoryLease struct {
	m    *Memory
	key  string
	h    uint64
	l    *keyLock
	done atomic.Bool
}

// Commit implements Lease: the state is stored, visible to the next claim,
// before the claim is released.
func (ls *memoryLease) Commit(_ context.Context, s conflict.State) error {
	if !ls.done.CompareAndSwap(false, true) {
		return nil
	}
	m := ls.m
	m.guard.RLock()
	defer m.guard.RUnlock()
	if m.closed.Load() {
		ls.release()
		return ErrClosed
	}
	m.write(ls.key, ls.h, s, ls.l)
	return nil
}

// Release implements Lease.
func (ls *memoryLease) Release() {
	if ls.done.CompareAndSwap(false, true) {
		ls.release()
	}
}

func (ls *memoryLease) release() {
	sh := ls.m.claimShard(ls.h)
	sh.mu.Lock()
	releaseLocked(sh, ls.key, ls.l)
	sh.mu.Unlock()
}
