package versioncache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The Redis store's key index (a sorted set per table, see Redis), what
// reads it (List and Purge) and its sweep.

// indexSuffix follows KeyPrefix in the name of the key index. A resource
// key would have to be exactly this string (a NUL byte and "index") to
// collide with it.
const indexSuffix = "\x00index"

// Purge implements Store. A prefix purge walks the key index under the
// prefix: it costs the keys it purges, not the keyspace.
func (r *Redis) Purge(ctx context.Context, key string, prefix bool) (int, error) {
	if r.closed.Load() {
		return 0, ErrClosed
	}
	if !prefix {
		return r.purge(ctx, key)
	}
	r.guard.Lock()
	if !r.closed.Load() {
		r.near.Clear()
	}
	r.guard.Unlock()
	n := 0
	for from := key; ; {
		keys, err := r.members(ctx, from, key, listBatch)
		if err != nil {
			return n, err
		}
		for _, k := range keys {
			p, err := r.purge(ctx, k)
			n += p
			if err != nil {
				return n, err
			}
		}
		if len(keys) < listBatch {
			return n, nil
		}
		from = keys[len(keys)-1] + "\x00"
	}
}

func (r *Redis) purge(ctx context.Context, key string) (int, error) {
	rep, err := r.run(ctx, purgeScript, key, genArg(newGen()), r.ttlUS, r.lifeMS)
	if err != nil {
		return 0, err
	}
	r.nearDel(key)
	return int(rep.code), nil
}

// listBatch is how many keys List and Purge take from the index at a time.
const listBatch = 256

// members returns up to n keys of the key index, in order, that start with
// prefix and are not less than from (from >= prefix).
func (r *Redis) members(ctx context.Context, from, prefix string, n int) ([]string, error) {
	lo, hi := "-", "+"
	if from != "" {
		lo = "[" + from
	}
	if end, ok := prefixEnd(prefix); ok {
		hi = "(" + end
	}
	keys, err := r.client.ZRangeByLex(ctx, r.keys, &redis.ZRangeBy{Min: lo, Max: hi, Count: int64(n)}).Result()
	if err != nil {
		return nil, r.failed(ctx, err)
	}
	return keys, nil
}

// prefixEnd returns the smallest string greater than every string that
// starts with prefix; ok is false when there is none (prefix is empty or
// all 0xff bytes).
func prefixEnd(prefix string) (string, bool) {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xff {
			return prefix[:i] + string([]byte{prefix[i] + 1}), true
		}
	}
	return "", false
}

// List implements Store. It walks the key index from the cursor and reads
// each key's state (one pipeline per batch); keys that left Redis are
// dropped from the index on the way.
func (r *Redis) List(ctx context.Context, prefix, after string, limit int) ([]Item, string, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	if r.closed.Load() {
		return nil, "", ErrClosed
	}
	from := listStart(prefix, after)
	var items []Item
	for len(items) <= limit {
		keys, err := r.members(ctx, from, prefix, listBatch)
		if err != nil {
			return nil, "", err
		}
		if len(keys) == 0 {
			break
		}
		known := r.tableArgs()[0]
		cmds, sent, err := r.readAll(ctx, keys)
		if err != nil {
			return nil, "", err
		}
		var gone []string
		jumped := false
		for j, cmd := range cmds {
			v, err := cmd.Result()
			if err != nil {
				continue
			}
			rep, err := r.parse(v, sent)
			if err != nil {
				continue
			}
			if rep.jumped {
				jumped = true
			}
			if jumped {
				continue // no age read across a clock jump is trusted
			}
			if rep.gen == 0 {
				gone = append(gone, keys[j]) // expired: no generation left
				continue
			}
			s, err := decodeState(rep.st, rep.u)
			if err != nil || rep.age < 0 || rep.age >= r.ttlUS {
				continue
			}
			if len(items) <= limit {
				items = append(items, Item{Key: keys[j], State: s})
			}
		}
		if jumped {
			if err := r.startEpoch(ctx, known); err != nil {
				return nil, "", err
			}
			return r.List(ctx, prefix, after, limit) // in the new epoch
		}
		if len(gone) > 0 {
			// Not needed for the answer: an error only leaves them for later.
			_ = r.prune(ctx, gone)
		}
		if len(keys) < listBatch {
			break
		}
		from = keys[len(keys)-1] + "\x00"
	}
	return page(items, limit)
}

// readAll runs the read script on keys in one pipeline of EVALSHA (the
// script's body is not sent per key); if Redis does not have the script
// (a restart, a new Cluster shard), it is loaded and the pipeline retried.
func (r *Redis) readAll(ctx context.Context, keys []string) ([]*redis.Cmd, int64, error) {
	args := append([]any{r.ttlUS}, r.tableArgs()...)
	for attempt := 0; ; attempt++ {
		sent := r.now()
		cmds := make([]*redis.Cmd, len(keys))
		pipe := r.client.Pipeline()
		for j, k := range keys {
			cmds[j] = readScript.EvalSha(ctx, pipe, r.scriptKeys(k), args...)
		}
		_, err := pipe.Exec(ctx)
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			if err := readScript.Load(ctx, r.client).Err(); err != nil {
				return nil, 0, r.failed(ctx, err)
			}
			continue
		}
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, 0, r.failed(ctx, err)
		}
		return cmds, sent, nil
	}
}

// The key index's sweep: every key a script adds to the index has the node
// check two members at a cursor that walks the index round and round, so
// that the index holds at most about twice the live keys. It runs in the
// background, one batch at a time, each key it checks declared to Redis.
type sweeper struct {
	mu      sync.Mutex
	pending int
	running bool
	cursor  string
}

// sweepBatch bounds the members one sweep round trip checks.
const sweepBatch = 128

// added notes n keys new to the index and starts a sweep if none runs and
// enough are pending (a round trip checks up to sweepBatch members).
func (r *Redis) added(n int) {
	if n <= 0 {
		return
	}
	s := &r.sweeper
	s.mu.Lock()
	s.pending += 2 * n
	if s.running || s.pending < sweepBatch/2 {
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	go r.sweep()
}

func (r *Redis) sweep() {
	s := &r.sweeper
	for {
		s.mu.Lock()
		n := min(s.pending, sweepBatch)
		s.pending -= n
		from := s.cursor
		if n == 0 || r.closed.Load() {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		next, err := r.sweepFrom(from, n)
		s.mu.Lock()
		if err != nil {
			s.pending = 0 // Redis is down: the next keys added start again
		}
		s.cursor = next
		s.mu.Unlock()
	}
}

// sweepFrom checks up to n members after from and prunes those whose keys
// are gone; it returns the next cursor ("" after the last member).
func (r *Redis) sweepFrom(from string, n int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	lo := "-"
	if from != "" {
		lo = "(" + from
	}
	ms, err := r.client.ZRangeByLex(ctx, r.keys, &redis.ZRangeBy{Min: lo, Max: "+", Count: int64(n)}).Result()
	if err != nil || len(ms) == 0 {
		return "", err
	}
	if err := r.prune(ctx, ms); err != nil {
		return from, err
	}
	if len(ms) < n {
		return "", nil
	}
	return ms[len(ms)-1], nil
}

// prune removes the members whose keys are gone from the index.
func (r *Redis) prune(ctx context.Context, members []string) error {
	keys := make([]string, 1, len(members)+1)
	keys[0] = r.keys
	args := make([]any, len(members))
	for i, m := range members {
		keys = append(keys, r.cfg.KeyPrefix+m)
		args[i] = m
	}
	if err := pruneScript.Run(ctx, r.client, keys, args...).Err(); err != nil {
		return fmt.Errorf("versioncache: redis: prune the key index: %w", err)
	}
	return nil
}
