package versioncache

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis store's write claims: Claim, the wake-ups of writes that wait
// for another node's claim, and the in-process gates that let one write
// per key and node ask Redis at a time. The held claim is in lease.go.

// Claim implements Store.
func (r *Redis) Claim(ctx context.Context, key string, timeout time.Duration) (Lease, Snapshot, error) {
	if err := r.check(); err != nil {
		return nil, Snapshot{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, Snapshot{}, err
	}
	deadline := time.Now().Add(timeout)
	g, err := r.gates.acquire(ctx, key, deadline, timeout <= 0, r.closing)
	if err != nil {
		var snap Snapshot
		if err == ErrClaimTimeout {
			snap.State, snap.Found, _ = r.Get(ctx, key)
		}
		return nil, snap, err
	}
	ls := &redisLease{r: r, key: key, gate: g, token: newToken()}
	backoff := minClaimPoll
	var takeover string // the holder this node watched make no progress for a lease
	var renewals int64
	for {
		wake := r.waitFor(key)
		sent := r.now()
		rep, err := r.run(ctx, claimScript, key, ls.token, r.leaseUS, r.ttlUS, genArg(newGen()), r.lifeMS,
			takeover, strconv.FormatInt(renewals, 10))
		if err != nil {
			r.unwait(key, wake)
			r.gates.release(key, g)
			// The script may have run before the reply was lost: give the
			// claim back rather than hold the key for a lease.
			go ls.abandon()
			return nil, Snapshot{}, err
		}
		e := r.learn(key, rep, false)
		snap := Snapshot{State: e.state, Found: e.found, Dropped: rep.dropped}
		if rep.code == 1 {
			r.unwait(key, wake)
			r.watches.forget(key)
			ls.epoch = rep.epoch
			ls.held(sent)
			ls.renewLater()
			if rep.young > 0 {
				kept, err := r.provisional(ctx, ls, time.Duration(rep.young)*time.Microsecond)
				if err != nil {
					r.gates.release(key, g)
					return nil, Snapshot{}, err
				}
				if !kept {
					// A claim from before the loss took the key back: wait
					// for it like for any other claim.
					ls = &redisLease{r: r, key: key, gate: g, token: newToken()}
					continue
				}
			}
			r.count(e.found)
			return ls, snap, nil
		}
		// Another claim holds the key: watch it on this node's clock.
		ripe := r.watches.see(key, rep.holder, rep.renewals, r.now(), int64(r.cfg.Lease))
		if ripe <= 0 {
			takeover, renewals = rep.holder, rep.renewals
			continue // it made no progress for a whole lease: take it over
		}
		left := time.Until(deadline)
		if timeout <= 0 || left <= 0 {
			r.unwait(key, wake)
			r.gates.release(key, g)
			return nil, snap, ErrClaimTimeout
		}
		// The holder's commit is published; the lease's end and the
		// backoff cover a notification that got lost.
		hint := max(time.Duration(rep.leaseEnd)*time.Microsecond, time.Duration(ripe))
		wait := min(backoff, hint+time.Millisecond, left)
		backoff = min(backoff*2, maxClaimPoll)
		if err = r.pause(ctx, wait, wake); err != nil {
			r.unwait(key, wake)
			r.gates.release(key, g)
			return nil, Snapshot{}, err
		}
	}
}

// pause waits for d, or for wake (nil: no wake-up), or until ctx ends
// (its error) or the store closes (ErrClosed).
func (r *Redis) pause(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.closing:
		return ErrClosed
	}
	return nil
}

// provisional waits out a claim granted within a lease of a loss
// (lua/claim.lua): a claim that held the key before the loss may still be
// acting, and its renewal takes the key back meanwhile. It reports whether
// the claim is still this one's; if not, or on error, the claim is given
// up (the gate stays held).
func (r *Redis) provisional(ctx context.Context, ls *redisLease, wait time.Duration) (bool, error) {
	err := r.pause(ctx, wait, nil)
	if err == nil {
		sent := r.now()
		var rep reply
		rep, err = r.run(ctx, renewScript, ls.key, ls.token, r.leaseUS, r.lifeMS, "confirm", ls.epoch)
		if err == nil && rep.code == 1 {
			ls.held(sent)
			return true, nil
		}
	}
	ls.done.Store(true)
	ls.stop()
	go ls.abandon()
	return false, err
}

// watches are the claims of other nodes that this node watches while its
// writes wait: a claim is taken over only after the watcher saw it make no
// progress (the same token and renewal count) for a whole lease, measured
// on the watcher's monotonic clock. A watch outlives the write that began
// it (the next write of the key goes on watching), and is forgotten when
// the node gets the claim or, unused, after two leases.
type watches struct {
	mu sync.Mutex
	m  map[string]watch
}

type watch struct {
	holder   string
	renewals int64
	since    int64 // Redis.now() when this node first saw holder at renewals
	last     int64 // Redis.now() when last seen
}

// maxWatches bounds the watches map; beyond it, stale watches are swept.
const maxWatches = 4096

// see records that key's claim is holder at renewals, and returns how long
// (ns) until the node may take it over; <= 0: now.
func (ws *watches) see(key, holder string, renewals, now, lease int64) int64 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = make(map[string]watch)
	}
	w, ok := ws.m[key]
	if !ok || w.holder != holder || w.renewals != renewals {
		if !ok && len(ws.m) >= maxWatches {
			for k, o := range ws.m {
				if now-o.last > 2*lease {
					delete(ws.m, k)
				}
			}
		}
		w = watch{holder: holder, renewals: renewals, since: now}
	}
	w.last = now
	ws.m[key] = w
	return lease - (now - w.since)
}

func (ws *watches) forget(key string) {
	ws.mu.Lock()
	delete(ws.m, key)
	ws.mu.Unlock()
}

// Polling bounds of a write waiting for another node's claim.
const (
	minClaimPoll = 2 * time.Millisecond
	maxClaimPoll = 100 * time.Millisecond
)

func newToken() string {
	return strconv.FormatUint(rand.Uint64(), 36) + "." + strconv.FormatUint(rand.Uint64(), 36)
}

// waitFor returns the channel closed when key's claim is next released.
func (r *Redis) waitFor(key string) chan struct{} {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	ch := r.wakers[key]
	if ch == nil {
		ch = make(chan struct{})
		r.wakers[key] = ch
	}
	return ch
}

func (r *Redis) unwait(key string, ch chan struct{}) {
	r.wakeMu.Lock()
	if r.wakers[key] == ch {
		delete(r.wakers, key)
	}
	r.wakeMu.Unlock()
}

func (r *Redis) wake(key string) {
	r.wakeMu.Lock()
	if ch := r.wakers[key]; ch != nil {
		close(ch)
		delete(r.wakers, key)
	}
	r.wakeMu.Unlock()
}

// listen wakes the writes waiting for a key whose claim a node released.
// go-redis resubscribes after a reconnect.
func (r *Redis) listen(released <-chan *redis.Message) {
	defer close(r.subDone)
	for m := range released {
		r.wake(r.heard(m.Payload))
	}
}

// gates lets one write per key at a time ask Redis for the claim; the
// others wait in process, so a release wakes one contender per node.
type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct {
	refs int           // holder + waiters
	ch   chan struct{} // capacity 1: a value in it means the gate is held
}

func (gs *gates) acquire(ctx context.Context, key string, deadline time.Time, try bool, closing <-chan struct{}) (*gate, error) {
	gs.mu.Lock()
	g := gs.m[key]
	if g == nil {
		g = &gate{ch: make(chan struct{}, 1)}
		gs.m[key] = g
	}
	g.refs++
	gs.mu.Unlock()
	select {
	case g.ch <- struct{}{}:
		return g, nil
	default:
	}
	err := ErrClaimTimeout
	if !try {
		t := time.NewTimer(time.Until(deadline))
		select {
		case g.ch <- struct{}{}:
			t.Stop()
			return g, nil
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		case <-closing:
			err = ErrClosed
		}
		t.Stop()
	}
	gs.drop(key, g)
	return nil, err
}

func (gs *gates) release(key string, g *gate) {
	<-g.ch
	gs.drop(key, g)
}

func (gs *gates) drop(key string, g *gate) {
	gs.mu.Lock()
	g.refs--
	if g.refs == 0 {
		delete(gs.m, key)
	}
	gs.mu.Unlock()
}
