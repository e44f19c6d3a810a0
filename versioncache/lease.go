package versioncache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// Holder is a Lease that can tell whether its claim is surely still held.
// A write checks it right before it goes to the upstream: a node that
// stalled (or could not renew) for most of a lease may have lost the claim
// to another node, which may have decided and written since.
type Holder interface {
	Held() bool
}

// Held reports whether l is surely still held: true for a Lease that is
// not a Holder (the memory store's claims do not run out).
func Held(l Lease) bool {
	h, ok := l.(Holder)
	return !ok || h.Held()
}

// redisLease is the Redis store's Lease: a claim held in the key's hash,
// renewed every Lease/3 while the write is in flight, and given up by the
// commit or release script.
type redisLease struct {
	r     *Redis
	key   string
	token string
	gate  *gate
	done  atomic.Bool
	epoch string       // the table's epoch the claim was granted in
	valid atomic.Int64 // Redis.now() until which the claim is surely held
	// validWall is the same deadline on the wall clock (unix ns).
	validWall atomic.Int64

	mu    sync.Mutex
	timer *time.Timer
}

// renewLater keeps the claim alive while the write is in flight.
func (ls *redisLease) renewLater() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.done.Load() {
		return
	}
	if ls.timer == nil {
		ls.timer = time.AfterFunc(ls.r.cfg.Lease/3, ls.renew)
	} else {
		ls.timer.Reset(ls.r.cfg.Lease / 3)
	}
}

func (ls *redisLease) renew() {
	if ls.done.Load() || ls.r.closed.Load() {
		return
	}
	r := ls.r
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	sent := r.now()
	mode := ""
	if ls.Held() {
		mode = "reassert" // if Redis lost the claim, take it back: the write may be at the upstream
	}
	rep, err := r.run(ctx, renewScript, ls.key, ls.token, r.leaseUS, r.lifeMS, mode, ls.epoch)
	cancel()
	if err == nil && rep.code == 0 {
		ls.valid.Store(0) // taken over: not held; Commit will find out
		return
	}
	if err == nil {
		ls.held(sent)
	}
	ls.renewLater() // renewed, or Redis did not answer: try again
}

// held notes that the claim was this lease's when a call sent at sent (a
// Redis.now()) reached Redis: no node takes it over before sent + lease on
// its own clock, so this node may act on it until then (less a tenth for
// the clocks' rates).
func (ls *redisLease) held(sent int64) {
	until := sent + int64(ls.r.cfg.Lease)*9/10
	for {
		v := ls.valid.Load()
		if v >= until || ls.valid.CompareAndSwap(v, until) {
			break
		}
	}
	wall := time.Now().UnixNano() - (ls.r.now() - sent) + int64(ls.r.cfg.Lease)*9/10
	for {
		v := ls.validWall.Load()
		if v >= wall || ls.validWall.CompareAndSwap(v, wall) {
			return
		}
	}
}

// Held implements Holder: false once the claim may have been taken over
// (this node stalled, or could not renew it, for most of a lease). Both the
// monotonic clock and the wall clock must say so: the monotonic clock
// stands still while a virtual machine is suspended, the wall clock does
// not (a wall clock stepped forward only makes a write wait and retry).
func (ls *redisLease) Held() bool {
	return ls.r.now() < ls.valid.Load() && time.Now().UnixNano() < ls.validWall.Load()
}

func (ls *redisLease) stop() {
	ls.mu.Lock()
	if ls.timer != nil {
		ls.timer.Stop()
	}
	ls.mu.Unlock()
}

// Commit implements Lease. A failed Commit leaves the claim to its lease:
// the next write to the key then finds it uncertain and re-reads.
func (ls *redisLease) Commit(ctx context.Context, s conflict.State) error {
	if !ls.done.CompareAndSwap(false, true) {
		return nil
	}
	ls.stop()
	r := ls.r
	defer r.gates.release(ls.key, ls.gate)
	if r.closed.Load() {
		return ErrClosed
	}
	st, gen := encodeState(s), newGen()
	rep, err := r.run(ctx, commitScript, ls.key, ls.token, st, uncertainArg(s.Uncertain), genArg(gen),
		r.lifeMS, r.ttlUS, r.channel, ls.key)
	if err != nil {
		return err
	}
	switch rep.code {
	case 1:
		r.learn(ls.key, rep, false)
		return nil
	case 2:
		return nil // a retry of a commit that was applied
	}
	r.nearDel(ls.key)
	return ErrLeaseLost
}

// Release implements Lease.
func (ls *redisLease) Release() {
	if !ls.done.CompareAndSwap(false, true) {
		return
	}
	ls.stop()
	defer ls.r.gates.release(ls.key, ls.gate)
	ls.abandon()
}

// abandon gives the claim back in Redis, if it is still this lease's.
func (ls *redisLease) abandon() {
	r := ls.r
	if r.closed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	_, _ = r.run(ctx, releaseScript, ls.key, ls.token, r.channel, ls.key, r.ttlUS)
}
