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
	for {
		wake := r.waitFor(key)
		rep, err := r.run(ctx, claimScript, key, ls.token, r.leaseUS, r.ttlUS, genArg(newGen()), r.lifeMS)
		if err != nil {
			r.unwait(key, wake)
			r.gates.release(key, g)
			// The script may have run before the reply was lost: give the
			// claim back rather than hold the key for a lease.
			go ls.abandon()
			return nil, Snapshot{}, err
		}
		e := r.learn(key, rep, false)
		snap := Snapshot{State: e.state, Found: e.found}
		if rep.code == 1 {
			r.unwait(key, wake)
			r.count(e.found)
			ls.renewLater()
			return ls, snap, nil
		}
		left := time.Until(deadline)
		if timeout <= 0 || left <= 0 {
			r.unwait(key, wake)
			r.gates.release(key, g)
			return nil, snap, ErrClaimTimeout
		}
		// The holder's commit is published; the lease's end and the
		// backoff cover a notification that got lost.
		wait := min(backoff, time.Duration(rep.leaseEnd)*time.Microsecond+time.Millisecond, left)
		backoff = min(backoff*2, maxClaimPoll)
		t := time.NewTimer(wait)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		case <-r.closing:
			err = ErrClosed
		}
		t.Stop()
		if err != nil {
			r.unwait(key, wake)
			r.gates.release(key, g)
			return nil, Snapshot{}, err
		}
	}
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
		r.wake(m.Payload)
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
