package versioncache

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The Redis store's defence against Redis losing data, and against its
// clock (README "Scaling out", "When Redis fails").
//
// Each table has a record, <KeyPrefix>\x00table: a random epoch and a count
// of the writes stored in it. Every script reads it (no extra round trip)
// together with the node's view (the epoch it knows and the highest count
// it saw, from replies and from the release notifications of every node).
// Redis losing data loses the record (a restart without persistence,
// FLUSHALL, a failover to an empty replica, eviction): the next script
// starts a new epoch. A record whose count went back in the epoch the node
// knows was rolled back (a failover to a replica that lagged, a restart
// from an older snapshot): a new epoch too. After a new epoch:
//   - states stored in an earlier epoch are never trusted;
//   - for a grace period (ttl + lease, <KeyPrefix>\x00grace with PX), a key
//     without a trusted state is *dropped*: its next write that claims a
//     version re-reads the upstream first, since it may have been written
//     through the proxy before the loss;
//   - for a lease after it, a claim is provisional (lua/claim.lua): its
//     holder waits until the epoch is a lease old, while a node that held
//     the key before the loss takes it back by its next renewal (its write
//     may be at the upstream), so two writes to a key are never in flight
//     across a loss; a read that started before the loss is not recorded.
//
// Clocks: ages are Redis TIME compared with Redis TIME, and a write claim is
// only taken over from a holder that a node watched make no progress (no
// renewal) for a whole lease on the watcher's own monotonic clock (as
// Kubernetes leader election does), so no decision rests on two machines'
// clocks agreeing. Each reply carries Redis's TIME; a node that sees it jump
// against its own monotonic clock (a step of the Redis host's clock, or a
// failover to a host with another clock) starts a new epoch, so that no age
// measured across the jump is trusted.

// Suffixes of the table's record and grace marker (after KeyPrefix).
const (
	tableSuffix = "\x00table"
	graceSuffix = "\x00grace"
)

// clockSlack is how far Redis's clock may seem to move against the node's
// own between two replies before the node calls it a jump.
const clockSlack = time.Second

// tableView is what a node knows of its table's epoch.
type tableView struct {
	mu    sync.Mutex
	epoch string
	seq   int64
	// lo and hi bound Redis's TIME minus the node's monotonic clock (µs),
	// as the last reply showed it: Redis read its clock after the call
	// was sent and before its reply arrived (hi == 0: no reply yet).
	lo, hi int64
	// losses counts the new epochs this node saw start (a loss, a
	// rollback or a clock jump).
	losses atomic.Uint64
}

// args returns the last four ARGV of every script: the epoch the node
// knows, the highest write count it saw, a fresh epoch, the grace (ms).
func (r *Redis) tableArgs() []any {
	r.view.mu.Lock()
	e, s := r.view.epoch, r.view.seq
	r.view.mu.Unlock()
	return []any{e, strconv.FormatInt(s, 10), strconv.FormatUint(uint64(newGen()), 36), r.graceMS}
}

// see takes what a reply says of the table: its epoch and write count, and
// Redis's TIME, read between sent and received (the node's clock, ns). It
// reports whether Redis's clock jumped against the node's own since the
// last reply: the offsets the two replies allow are more than clockSlack
// apart. A node that stalls between sending and reading a reply only
// widens what that reply allows, so a stall is never taken for a jump.
func (r *Redis) see(epoch string, seq, redisNowUS, sent, received int64) (jumped bool) {
	v := &r.view
	v.mu.Lock()
	defer v.mu.Unlock()
	if epoch != "" && epoch != v.epoch {
		if v.epoch != "" {
			v.losses.Add(1)
			r.clearNear()
		}
		v.epoch, v.seq = epoch, seq
	} else if seq > v.seq {
		v.seq = seq
	}
	if redisNowUS > 0 {
		lo, hi := redisNowUS-received/1e3, redisNowUS-sent/1e3
		slack := clockSlack.Microseconds()
		jumped = v.hi != 0 && (lo > v.hi+slack || hi < v.lo-slack)
		v.lo, v.hi = lo, hi
	}
	return jumped
}

// heard takes a release notification: "<epoch> <count> <key>".
func (r *Redis) heard(payload string) (key string) {
	e, rest, ok := strings.Cut(payload, " ")
	if !ok {
		return payload
	}
	s, key, ok := strings.Cut(rest, " ")
	if !ok {
		return payload
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		v := &r.view
		v.mu.Lock()
		switch {
		case v.epoch == "":
			v.epoch, v.seq = e, n // a node that has not asked yet learns the epoch
		case e == v.epoch && n > v.seq:
			v.seq = n
		}
		v.mu.Unlock()
	}
	return key
}

// Losses counts the new epochs this node saw start: Redis lost data, was
// rolled back, or its clock jumped.
func (r *Redis) Losses() uint64 { return r.view.losses.Load() }

// clearNear empties the near-cache: what it knows is of another epoch.
func (r *Redis) clearNear() {
	r.guard.RLock()
	if !r.closed.Load() {
		r.near.Clear()
	}
	r.guard.RUnlock()
}
