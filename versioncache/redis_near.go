package versioncache

import (
	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// The Redis store's near-cache: what this node last learned about each key,
// in ristretto. It serves the read path only, never a write decision.

// nearEntry is what this node last learned about a key from Redis. It is
// never modified once stored.
type nearEntry struct {
	gen    int64
	state  conflict.State
	found  bool  // the state was alive when learned
	stored int64 // Redis.now() when the state was stored in Redis, as far as known
	seen   int64 // Redis.now() when learned
}

// learn puts what a reply says about key into the near-cache and returns
// it. wait makes a new key visible before it returns.
func (r *Redis) learn(key string, rep reply, wait bool) *nearEntry {
	s, err := decodeState(rep.st, rep.u)
	found := err == nil && rep.age >= 0 && rep.age < r.ttlUS
	if !found {
		s = conflict.State{}
	}
	now := r.now()
	e := &nearEntry{gen: rep.gen, state: s, found: found, stored: now - max(rep.age, 0)*1000, seen: now}
	r.guard.RLock()
	defer r.guard.RUnlock()
	if r.closed.Load() {
		return e
	}
	if e.gen == 0 {
		r.near.Del(key)
		return e
	}
	if r.near.SetWithTTL(key, e, e.cost(key), r.cfg.TTL) && wait {
		r.near.Wait()
	}
	return e
}

func (r *Redis) nearGet(key string) *nearEntry {
	r.guard.RLock()
	defer r.guard.RUnlock()
	if r.closed.Load() {
		return nil
	}
	e, _ := r.near.Get(key)
	return e
}

func (r *Redis) nearDel(key string) {
	r.guard.RLock()
	if !r.closed.Load() {
		r.near.Del(key)
	}
	r.guard.RUnlock()
}

func (e *nearEntry) cost(key string) int64 {
	n := int64(96+len(key)+len(e.state.Version)) + int64(len(e.state.Superseded))*16
	for _, v := range e.state.Superseded {
		n += int64(len(v))
	}
	return n
}
