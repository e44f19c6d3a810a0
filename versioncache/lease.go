package versioncache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// redisLease is the Redis store's Lease: a claim held in the key's hash,
// renewed every Lease/3 while the write is in flight, and given up by the
// commit or release script.
type redisLease struct {
	r     *Redis
	key   string
	token string
	gate  *gate
	done  atomic.Bool

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
	ctx, cancel := context.WithTimeout(context.Background(), ls.r.cfg.Timeout)
	ok, err := renewScript.Run(ctx, ls.r.client, ls.r.scriptKeys(ls.key),
		ls.token, ls.r.leaseUS, ls.r.lifeMS).Int()
	cancel()
	if err == nil && ok == 0 {
		return // taken over: Commit will find out
	}
	ls.renewLater() // renewed, or Redis did not answer: try again
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
