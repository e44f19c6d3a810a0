package versioncache

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// RedisHistory is the history shared by the nodes of a Redis store (SPEC
// "Scaling out": with history, changes and merge auto work whichever node
// a write lands on). It keeps a History as its near-cache.
//
// Data model: four Redis keys per table, each starting with the store's
// KeyPrefix, all declared to every script (lua/history_prelude.lua):
//
//	<prefix>\x00history        hash: entry id -> the representation's raw bytes
//	<prefix>\x00history-lru    sorted set: entry ids by last use
//	<prefix>\x00history-ids    sorted set (score 0): entry ids in lex order
//	<prefix>\x00history-bytes  the table's cost in bytes
//
// An entry id is the history key (key, or key NUL scope with
// history_scope), escaped so that it holds no NUL, then NUL and the
// canonical version: a key's entries, and the keys with a prefix, are lex
// ranges of history-ids. Bodies are stored as they came (binary hash
// values, not JSON-escaped).
//
// The bound: an entry costs its body's allocation in Redis (jemalloc size
// class), its id three times and redisHistoryEntryOverhead; the add script
// adds the cost to history-bytes and, in the same script, evicts the key's
// least recently used entries beyond the per-key count, then the table's
// least recently used entries until the total is within maxBytes less
// redisHistoryTableOverhead (the four keys themselves). The overhead per
// entry was measured with MEMORY USAGE (TestRedisHistoryMemoryUsage): the
// count is never below what Redis uses. The keys live a day after the
// last add.
//
// Read path: Add records in the near-cache and queues the Redis add for a
// background worker (a bounded queue; an add that does not fit is dropped
// and counted): a GET never waits for Redis. A representation the node
// already held with the same bytes is only re-marked as used in Redis, at
// most every historyTouchEvery. Write path: AddNow (the representation a
// write returned) is stored before the write's claim is released, Lookup
// asks the near-cache, then Redis for the versions it lacks in one round
// trip, and a purge (DELETE, admin purge) drops the entries in Redis and
// tells every node's near-cache through <prefix>\x00history-purge (a node
// whose subscription was re-established clears its near-cache: it may
// have missed a purge).
//
// Redis down: adds are dropped, lookups find only the near-cache: a stale
// write gets a 409 without changes (or with them, from the near-cache),
// never an error.
type RedisHistory struct {
	local    *History
	store    *Redis
	client   redis.UniversalClient
	keys     []string
	channel  string
	perKey   string
	maxBytes int64
	maxArg   string
	lifeMS   string
	timeout  time.Duration

	queue       chan historyJob
	queuedBytes atomic.Int64
	maxQueued   int64
	closing     chan struct{}
	done        chan struct{}
	closeOnce   sync.Once
	pubsub      *redis.PubSub
	subDone     chan struct{}
	hold        chan struct{} // tests: the worker waits while it is set

	downUntil atomic.Int64
	seed      maphash.Seed
	touched   [historyTouchSlots]atomic.Int64

	added, touches, dropped, failed, evictions atomic.Uint64
	lookups, hits, roundTrips, invalidations   atomic.Uint64
}

// RedisHistoryStats are a shared history's counters (this node's view).
type RedisHistoryStats struct {
	// Queued is the number of adds waiting, QueuedBytes their bodies.
	Queued      int
	QueuedBytes int64
	// Added counts the representations Redis took, Touches the adds of
	// one it held already (re-marked as used);
	// Dropped the adds the full queue refused, Failed those Redis did not
	// take (down, timeout).
	Added, Touches, Dropped, Failed uint64
	// Evictions counts the entries this node's adds evicted in Redis.
	Evictions uint64
	// Lookups counts the Redis lookups, Hits the representations found.
	Lookups, Hits uint64
	// RoundTrips counts the calls to Redis of the shared history.
	RoundTrips uint64
	// Invalidations counts the purges applied to the near-cache.
	Invalidations uint64
}

const (
	// redisHistoryEntryOverhead is what an entry costs in Redis beside its
	// body's allocation and its id (three times): the hash's dict entry,
	// the skiplist nodes and dict entries of the two sorted sets. Measured
	// with MEMORY USAGE (TestRedisHistoryMemoryUsage); ENTRY_OVERHEAD in
	// lua/history_prelude.lua.
	redisHistoryEntryOverhead = 320
	// redisHistoryTableOverhead is set aside from the bound for the
	// table's four keys themselves (names, objects, empty structures).
	redisHistoryTableOverhead = 1 << 10
	// redisHistoryLife is how long the table's keys live after the last add.
	redisHistoryLife = 24 * time.Hour
	// historyQueueLen bounds the adds waiting for the worker; their bodies
	// are bounded by min(maxBytes, historyQueueBytes).
	historyQueueLen   = 1024
	historyQueueBytes = 16 << 20
	// historyTouchEvery is how often a node re-marks a representation it
	// keeps reading as used in Redis.
	historyTouchEvery = 5 * time.Second
	historyTouchSlots = 4096
	// historyPurgeBatch bounds the entries one purge script drops.
	historyPurgeBatch = 1000
)

// redisHistoryCost is what an entry costs against the bound, as the add
// script counts it (cost in lua/history_prelude.lua).
func redisHistoryCost(bodyLen, idLen int) int64 {
	return jemallocSize(int64(bodyLen)+10) + 3*jemallocSize(int64(idLen)+4) + redisHistoryEntryOverhead
}

// jemallocSize is the size class of an allocation of n bytes (16-byte
// steps up to 128, then four classes per doubling).
func jemallocSize(n int64) int64 {
	switch {
	case n <= 16:
		return 16
	case n <= 128:
		return (n + 15) / 16 * 16
	}
	p := int64(256)
	for p < n {
		p *= 2
	}
	step := p / 8
	return (n + step - 1) / step * step
}

type historyJob struct {
	key, version string
	body         []byte
	flushed      chan struct{} // a marker: closed when the jobs before it are done
}

// NewRedisHistory shares local through s, when s is a Redis store: per key
// the newest perKey representations, all of them within maxBytes in
// Redis. ok is false for other stores (local is then the history).
func NewRedisHistory(s Store, local *History, perKey int, maxBytes int64) (*RedisHistory, bool) {
	r, ok := s.(*Redis)
	if !ok || local == nil {
		return nil, false
	}
	p := r.cfg.KeyPrefix
	h := &RedisHistory{
		local:    local,
		store:    r,
		client:   r.client,
		keys:     []string{p + "\x00history", p + "\x00history-lru", p + "\x00history-ids", p + "\x00history-bytes"},
		channel:  p + "\x00history-purge",
		perKey:   strconv.Itoa(max(perKey, 1)),
		maxBytes: maxBytes,
		maxArg:   strconv.FormatInt(max(maxBytes-redisHistoryTableOverhead, 0), 10),
		lifeMS:   strconv.FormatInt(redisHistoryLife.Milliseconds(), 10),
		timeout:  r.cfg.Timeout,
		queue:    make(chan historyJob, historyQueueLen),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		subDone:  make(chan struct{}),
		seed:     maphash.MakeSeed(),
	}
	h.maxQueued = min(maxBytes, historyQueueBytes)
	h.pubsub = h.client.Subscribe(context.Background(), h.channel)
	go h.listen(h.pubsub.ChannelWithSubscriptions())
	go h.work()
	return h, true
}

// Local is the near-cache.
func (h *RedisHistory) Local() *History { return h.local }

// Add implements Representations: the near-cache records body at once;
// Redis gets it from the worker. It never waits for Redis, and drops the
// add (counted) when the queue is full.
func (h *RedisHistory) Add(key, version string, body []byte) {
	v := conflict.Canonical(version)
	if v == "" || len(body) == 0 || h.isClosed() {
		return
	}
	old, had := h.local.Get(key, v)
	h.local.Add(key, v, body)
	kept, ok := h.local.Get(key, v)
	switch {
	case ok && had && len(old) > 0 && len(kept) > 0 && &old[0] == &kept[0]:
		// Read again: sent again now and then, which re-marks it as used
		// in Redis (the script compares, and keeps the bytes it holds), and
		// stores it if Redis lost it (or never got it: a dropped add).
		if h.touchDue(key, v) {
			h.enqueue(historyJob{key: key, version: v, body: kept})
		}
	case ok:
		h.touchDue(key, v)
		h.enqueue(historyJob{key: key, version: v, body: kept}) // the near-cache's copy: never modified
	default:
		// Too large for the near-cache, or held with other bytes (now
		// forgotten there): Redis compares and decides too.
		h.enqueue(historyJob{key: key, version: v, body: append([]byte(nil), body...)})
	}
}

// AddNow implements Representations: it returns once Redis holds body
// (or failed to).
func (h *RedisHistory) AddNow(ctx context.Context, key, version string, body []byte) {
	v := conflict.Canonical(version)
	if v == "" || len(body) == 0 || h.isClosed() {
		return
	}
	h.local.Add(key, v, body)
	h.touchDue(key, v) // sent now: no re-send for a while
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
	defer cancel()
	h.send(ctx, historyJob{key: key, version: v, body: body})
}

// Lookup implements Representations: the near-cache first, then Redis for
// the versions it lacks, in one round trip; what Redis has enters the
// near-cache. With Redis down the near-cache's answer stands.
func (h *RedisHistory) Lookup(ctx context.Context, key string, versions ...string) [][]byte {
	out := h.local.Lookup(ctx, key, versions...)
	var ids []any
	var at []int
	for i, b := range out {
		if b != nil {
			// Used here: re-marked in Redis now and then (queued).
			if v := conflict.Canonical(versions[i]); h.touchDue(key, v) {
				h.enqueue(historyJob{key: key, version: v, body: b})
			}
			continue
		}
		if v := conflict.Canonical(versions[i]); v != "" {
			ids = append(ids, historyID(key, v))
			at = append(at, i)
		}
	}
	if len(ids) == 0 || h.check() != nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	h.lookups.Add(1)
	h.roundTrips.Add(1)
	res, err := historyGetScript.Run(ctx, h.client, h.keys, ids...).Slice()
	if err != nil {
		h.fail(ctx, err)
		return out
	}
	for j, x := range res {
		if b, ok := x.(string); ok && j < len(at) && b != "" {
			i := at[j]
			out[i] = []byte(b)
			h.hits.Add(1)
			h.touchDue(key, conflict.Canonical(versions[i])) // just marked used in Redis
			h.local.Add(key, versions[i], out[i])
		}
	}
	return out
}

// Purge implements Representations: key (prefix false) or every key with
// the prefix, in Redis and in every node's near-cache. It reports the
// entries dropped in Redis (or, with Redis down, the keys dropped here).
func (h *RedisHistory) Purge(key string, prefix bool) int {
	n := h.local.Purge(key, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	var lo, hi string
	msg := "k" + key
	if prefix {
		lo, hi = prefixRange(escapeHistoryKey(key))
		msg = "p" + key
	} else {
		lo, hi = keyRange(key)
	}
	if m, err := h.purge(ctx, msg, lo, hi); err == nil {
		return m
	}
	return n
}

// DropKey implements Representations: key in every history_scope, in one
// round trip (a DELETE through the proxy).
func (h *RedisHistory) DropKey(ctx context.Context, key string) {
	h.local.DropKey(ctx, key)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
	defer cancel()
	lo, hi := keyRange(key)
	slo, shi := prefixRange(escapeHistoryKey(key + "\x00"))
	_, _ = h.purge(ctx, "d"+key, lo, hi, slo, shi)
}

func (h *RedisHistory) purge(ctx context.Context, msg string, ranges ...string) (int, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	args := []any{historyPurgeBatch, h.channel, msg}
	for _, r := range ranges {
		args = append(args, r)
	}
	total := 0
	for {
		h.roundTrips.Add(1)
		n, err := historyPurgeScript.Run(ctx, h.client, h.keys, args...).Int()
		if err != nil {
			h.fail(ctx, err)
			return total, err
		}
		total += n
		if n < historyPurgeBatch {
			return total, nil
		}
	}
}

// Stats reports the node's counters.
func (h *RedisHistory) Stats() RedisHistoryStats {
	return RedisHistoryStats{
		Queued: len(h.queue), QueuedBytes: h.queuedBytes.Load(),
		Added: h.added.Load(), Touches: h.touches.Load(), Dropped: h.dropped.Load(), Failed: h.failed.Load(),
		Evictions: h.evictions.Load(), Lookups: h.lookups.Load(), Hits: h.hits.Load(),
		RoundTrips: h.roundTrips.Load(), Invalidations: h.invalidations.Load(),
	}
}

// UsedBytes is the table's cost in Redis as the scripts count it.
func (h *RedisHistory) UsedBytes(ctx context.Context) (int64, error) {
	n, err := h.client.Get(ctx, h.keys[3]).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// Keys are the Redis keys of the table (bodies, lru, ids, bytes).
func (h *RedisHistory) Keys() []string { return append([]string(nil), h.keys...) }

// Close stops the worker (queued adds are dropped) and the subscription;
// the client is the store's. The near-cache is left to its owner.
func (h *RedisHistory) Close() error {
	h.closeOnce.Do(func() {
		close(h.closing)
		<-h.done
		_ = h.pubsub.Close()
		<-h.subDone
	})
	return nil
}

func (h *RedisHistory) isClosed() bool {
	select {
	case <-h.closing:
		return true
	default:
		return false
	}
}

// Flush waits until the adds queued before it are done (tests, and a
// graceful stop that wants them in Redis), or ctx ends.
func (h *RedisHistory) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case h.queue <- historyJob{flushed: done}:
	case <-h.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-h.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue hands job to the worker, or drops it when the queue is full.
func (h *RedisHistory) enqueue(job historyJob) {
	n := int64(len(job.body))
	if h.queuedBytes.Add(n) > h.maxQueued && n > 0 {
		h.queuedBytes.Add(-n)
		h.dropped.Add(1)
		return
	}
	select {
	case h.queue <- job:
	default:
		h.queuedBytes.Add(-n)
		h.dropped.Add(1)
	}
}

func (h *RedisHistory) work() {
	defer close(h.done)
	for {
		select {
		case <-h.closing:
			return
		case job := <-h.queue:
			if h.hold != nil {
				select {
				case <-h.hold:
				case <-h.closing:
					return
				}
			}
			if job.flushed != nil {
				close(job.flushed)
				continue
			}
			h.queuedBytes.Add(-int64(len(job.body)))
			ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
			h.send(ctx, job)
			cancel()
		}
	}
}

// send runs the add script for job.
func (h *RedisHistory) send(ctx context.Context, job historyJob) {
	if h.check() != nil {
		h.failed.Add(1)
		return
	}
	id := historyID(job.key, job.version)
	h.roundTrips.Add(1)
	lo, hi := keyRange(job.key)
	res, err := historyAddScript.Run(ctx, h.client, h.keys, id, job.body, h.maxArg, h.perKey, lo, hi,
		h.lifeMS, h.channel, "k"+job.key).Int64Slice()
	if err != nil {
		h.fail(ctx, err)
		return
	}
	if len(res) == 2 {
		if res[0] == 1 {
			h.touches.Add(1)
		} else {
			h.added.Add(1)
		}
		h.evictions.Add(uint64(res[1]))
	}
}

// touchDue reports whether key's version was last re-marked in Redis more
// than historyTouchEvery ago (slots are shared by hash: a collision only
// sends a touch early or late).
func (h *RedisHistory) touchDue(key, version string) bool {
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	_, _ = mh.WriteString(key)
	_ = mh.WriteByte(0)
	_, _ = mh.WriteString(version)
	slot := &h.touched[mh.Sum64()%historyTouchSlots]
	now := time.Now().UnixNano()
	last := slot.Load()
	return now-last >= int64(historyTouchEvery) && slot.CompareAndSwap(last, now)
}

// check fails at once while Redis is known to be down (for the history or
// for the store).
func (h *RedisHistory) check() error {
	if h.isClosed() {
		return ErrClosed
	}
	if time.Now().UnixNano() < h.downUntil.Load() {
		return fmt.Errorf("%w: history: redis failed less than %s ago", ErrUnavailable, RedisRetryAfter)
	}
	return h.store.check()
}

// fail counts a failed call and, unless the caller's context ended, keeps
// the history from asking Redis for RedisRetryAfter.
func (h *RedisHistory) fail(ctx context.Context, err error) {
	h.failed.Add(1)
	if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		h.downUntil.Store(time.Now().Add(RedisRetryAfter).UnixNano())
	}
	_ = err
}

// listen applies the purges of every node to the near-cache. A
// subscription re-established after the first may have missed some: the
// near-cache is cleared.
func (h *RedisHistory) listen(ch <-chan any) {
	defer close(h.subDone)
	subscribed := false
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if subscribed {
				h.local.Purge("", true)
				h.invalidations.Add(1)
			}
			subscribed = true
		case *redis.Message:
			if m.Payload == "" {
				continue
			}
			key := m.Payload[1:]
			switch m.Payload[0] {
			case 'k':
				h.local.Purge(key, false)
			case 'p':
				h.local.Purge(key, true)
			case 'd':
				h.local.DropKey(context.Background(), key)
			}
			h.invalidations.Add(1)
		}
	}
}

// historyID is the entry id of key's representation at version (canonical).
func historyID(key, version string) string {
	return escapeHistoryKey(key) + "\x00" + version
}

// escapeHistoryKey maps key to a string without NUL, keeping prefixes:
// \x01 becomes \x01\x02, NUL \x01\x01.
func escapeHistoryKey(key string) string {
	if !strings.ContainsAny(key, "\x00\x01") {
		return key
	}
	var b strings.Builder
	b.Grow(len(key) + 8)
	for i := 0; i < len(key); i++ {
		switch c := key[i]; c {
		case 0:
			b.WriteString("\x01\x01")
		case 1:
			b.WriteString("\x01\x02")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// keyRange is the ZRANGEBYLEX range of key's entries.
func keyRange(key string) (string, string) {
	e := escapeHistoryKey(key)
	return "[" + e + "\x00", "(" + e + "\x01"
}

// prefixRange is the ZRANGEBYLEX range of the ids starting with p.
func prefixRange(p string) (string, string) {
	if p == "" {
		return "-", "+"
	}
	b := []byte(p)
	for len(b) > 0 && b[len(b)-1] == 0xff {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "[" + p, "+"
	}
	b[len(b)-1]++
	return "[" + p, "(" + string(b)
}

var _ Representations = (*RedisHistory)(nil)
