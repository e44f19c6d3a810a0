package versioncache

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// ErrUnavailable wraps every error of a shared store that could not be
// reached or did not answer in time (on_store_error decides what a write
// then gets).
var ErrUnavailable = errors.New("versioncache: store unavailable")

// ErrLeaseLost is returned by Lease.Commit when another node took the claim
// over after its lease ran out: nothing was recorded, and the key is now
// uncertain (the next write re-reads the upstream).
var ErrLeaseLost = errors.New("versioncache: write claim lost (lease ran out and another write took it over)")

// Defaults of the Redis store.
const (
	DefaultRedisTimeout   = 2 * time.Second
	DefaultRedisLease     = 10 * time.Second
	DefaultRedisNearCache = time.Second
	DefaultRedisPrefix    = "caddy-conflict:"
	// RedisRetryAfter is how long a store that failed is not asked again:
	// calls fail at once meanwhile (reads pass, writes get on_store_error)
	// instead of each waiting for the timeout. It is also the Retry-After
	// of store-unavailable.
	RedisRetryAfter = time.Second
)

// RedisConfig configures the Redis store.
type RedisConfig struct {
	// Addr is host:port of a standalone Redis (or a primary endpoint).
	Addr               string
	Username, Password string
	DB                 int
	// TLS, when set, connects with TLS.
	TLS *tls.Config
	// KeyPrefix starts every Redis key (and the notification channel) of
	// this table; it must tell tables apart (the handler adds the version
	// source to key_prefix).
	KeyPrefix string
	// Timeout bounds dialing, each read and each write. Default
	// DefaultRedisTimeout.
	Timeout time.Duration
	// Lease is how long a write claim survives its node: a live node renews
	// it every Lease/3 while its write is in flight, so a node that dies
	// mid-write frees the key at most Lease later (the key is then
	// uncertain). Default DefaultRedisLease.
	Lease time.Duration
	// TTL is how long a learned state is trusted (ttl). Default DefaultTTL.
	TTL time.Duration
	// NearBytes bounds the in-process near-cache (cache_size). Default
	// DefaultMemoryBytes.
	NearBytes int64
	// NearCache is how long what the near-cache knows may stand in for
	// Redis on the read path (a read that saw what the near-cache says is
	// not written again). Negative: never. Default DefaultRedisNearCache.
	NearCache time.Duration
}

// Redis is a Store shared by several Caddy nodes through one Redis server.
// It gives the guarantees of Memory across nodes: a write's check and claim
// is one Lua script (atomic in Redis), its result is stored and the claim
// released by another, and a write decision is never made on local data.
//
// Data model: one Redis hash per resource key, <KeyPrefix><key>, and one
// sorted set per table, <KeyPrefix>\x00index, that indexes the keys by
// prefix, so that List, a prefix Purge and `guard children` cost the keys
// they return, not a SCAN of the keyspace. Every script that stores a hash
// adds its key to the index (no extra round trip); members of keys that
// expired are swept as new keys arrive (at most about as many as there are
// live keys) and dropped when a List meets them. Keys stored by a version
// without the index enter it on their next change. (Redis Cluster is not
// supported: the index and a table's hashes are not in one slot.) A hash's
// fields:
//
//	st  the state (encodeState), trusted while at is less than ttl ago
//	u   "1" when the state is uncertain (a write's outcome was never seen)
//	at  when st/u were stored (Redis TIME, µs)
//	g   the key's generation: a random number replaced by every change of
//	    the key (claim, commit, record, purge, a read that changed st)
//	c   the write claim's token, ce its lease deadline (µs)
//	t   "1": a claim was taken over from a writer that later finished, so
//	    the current claimant's result is stored as uncertain
//	lc  the token of the last committed claim (a retried Commit is a no-op)
//
// Reads (SPEC: a late read must not resurrect a version that a write
// superseded). A read may be recorded only if no write to the key was
// decided or completed while it was in flight. ReadStart takes the key's
// generation as known to this node (from the near-cache: no round trip),
// and the observe script records the read only if the key still has that
// generation and no claim. Generations are random and never reused, so the
// comparison needs no clock: a stale or unknown generation only means the
// read is not recorded (never that a stale one is). Comparing Redis TIME
// stamps with a node's estimate of Redis's clock would also avoid the round
// trip, but a clock step on the Redis host could then let a late read
// through; the generation cannot. On a near-cache miss ReadStart asks Redis
// once (and creates the generation), so the first read of a key on a node
// is learned too.
//
// The near-cache (ristretto, bounded by NearBytes) keeps per key the last
// generation and state this node saw. It is never used for a write
// decision; on the read path it saves the observe round trip when a read
// saw what the node already knows (for at most NearCache).
//
// Waiting writers: a node lets one write per key at a time ask Redis (the
// others wait in process, like Memory's claims); it retries when the
// holder's commit is published on <KeyPrefix>released, when the holder's
// lease would end, or after a short backoff (a lost notification costs at
// most that).
type Redis struct {
	cfg     RedisConfig
	client  *redis.Client
	pubsub  *redis.PubSub
	channel string
	// keys is the table's key index, a sorted set; sweep its cleaning
	// cursor (see the index function of the scripts).
	keys, sweep string
	ttlUS       int64 // ttl in µs
	leaseUS     int64
	lifeMS      string // PEXPIRE of a key: it outlives its state and its claim

	base time.Time
	near *ristretto.Cache[string, *nearEntry]
	// guard keeps ristretto's Close from racing a Set or Get.
	guard   sync.RWMutex
	closed  atomic.Bool
	closing chan struct{}

	gates   gates
	wakeMu  sync.Mutex
	wakers  map[string]chan struct{}
	subDone chan struct{}

	downUntil atomic.Int64 // unix ns; calls fail at once before it

	hits, misses, evictions, rejections atomic.Uint64
	roundTrips                          atomic.Uint64
}

// nearEntry is what this node last learned about a key from Redis. It is
// never modified once stored.
type nearEntry struct {
	gen    int64
	state  conflict.State
	found  bool  // the state was alive when learned
	stored int64 // Redis.now() when the state was stored in Redis, as far as known
	seen   int64 // Redis.now() when learned
}

// NewRedis opens a Redis store. It does not wait for Redis: a Redis that is
// down now is retried on every use (reads pass meanwhile, writes get
// on_store_error).
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if cfg.Addr == "" {
		return nil, errors.New("versioncache: redis: no address")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRedisTimeout
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultRedisLease
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NearBytes == 0 {
		cfg.NearBytes = DefaultMemoryBytes
	}
	if cfg.NearCache == 0 {
		cfg.NearCache = DefaultRedisNearCache
	}
	switch {
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("versioncache: redis: timeout %s is negative", cfg.Timeout)
	case cfg.Lease < 10*time.Millisecond:
		return nil, fmt.Errorf("versioncache: redis: lease %s is too short", cfg.Lease)
	case cfg.TTL < 0:
		return nil, fmt.Errorf("versioncache: ttl %s is negative", cfg.TTL)
	case cfg.NearBytes < 64<<10:
		return nil, fmt.Errorf("versioncache: redis: near-cache of %d bytes is below 64KiB", cfg.NearBytes)
	}
	r := &Redis{
		cfg:     cfg,
		channel: cfg.KeyPrefix + "released",
		keys:    cfg.KeyPrefix + indexSuffix,
		sweep:   cfg.KeyPrefix + indexSuffix + "-sweep",
		ttlUS:   cfg.TTL.Microseconds(),
		leaseUS: cfg.Lease.Microseconds(),
		lifeMS:  strconv.FormatInt((max(cfg.TTL, cfg.Lease) + time.Second).Milliseconds(), 10),
		base:    time.Now(),
		closing: make(chan struct{}),
		gates:   gates{m: make(map[string]*gate)},
		wakers:  make(map[string]chan struct{}),
		subDone: make(chan struct{}),
	}
	near, err := ristretto.NewCache(&ristretto.Config[string, *nearEntry]{
		NumCounters: max(cfg.NearBytes/64, 4096),
		MaxCost:     cfg.NearBytes,
		BufferItems: 64,
		OnEvict: func(*ristretto.Item[*nearEntry]) {
			if !r.closed.Load() {
				r.evictions.Add(1)
			}
		},
		OnReject: func(*ristretto.Item[*nearEntry]) {
			if !r.closed.Load() {
				r.rejections.Add(1)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("versioncache: redis: near-cache: %w", err)
	}
	r.near = near
	r.client = redis.NewClient(&redis.Options{
		Addr:        cfg.Addr,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DB:          cfg.DB,
		TLSConfig:   cfg.TLS,
		ClientName:  "caddy-conflict",
		DialTimeout: cfg.Timeout,
		// One dial per attempt: a Redis that is down fails the call at
		// once (go-redis would try five times).
		DialerRetries: 1,
		ReadTimeout:   cfg.Timeout,
		WriteTimeout:  cfg.Timeout,
		// Request contexts bound the calls too (a client that went away).
		ContextTimeoutEnabled: true,
		// One retry survives a connection Redis closed (a restart); every
		// script is idempotent, so a retry after a lost reply is safe.
		MaxRetries: 1,
		// RESP2 and no handshake extras: works with Redis 5+, Valkey and
		// managed Redis, and keeps go-redis from logging refusals.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	r.client.AddHook(countHook{&r.roundTrips})
	r.pubsub = r.client.Subscribe(context.Background(), r.channel)
	go r.listen(r.pubsub.Channel())
	return r, nil
}

// now is the node's monotonic clock in nanoseconds.
func (r *Redis) now() int64 { return int64(time.Since(r.base)) }

// RoundTrips counts the commands (and pipelines) sent to Redis.
func (r *Redis) RoundTrips() uint64 { return r.roundTrips.Load() }

// EvictionPolicy returns Redis's maxmemory-policy. Any policy but
// noeviction may drop a key's state and its generation, which turns into
// forwards (never into rejections) but weakens the guarantee; Redis must
// also let CONFIG GET through (managed services may not: then err != nil).
func (r *Redis) EvictionPolicy(ctx context.Context) (string, error) {
	m, err := r.client.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return "", err
	}
	return m["maxmemory-policy"], nil
}

// Ping checks that Redis answers (ErrClosed once the store is closed).
func (r *Redis) Ping(ctx context.Context) error {
	err := r.client.Ping(ctx).Err()
	if r.closed.Load() {
		return ErrClosed
	}
	return err
}

// check fails at once while the store is known to be down.
func (r *Redis) check() error {
	if r.closed.Load() {
		return ErrClosed
	}
	if time.Now().UnixNano() < r.downUntil.Load() {
		return fmt.Errorf("%w: redis %s failed less than %s ago", ErrUnavailable, r.cfg.Addr, RedisRetryAfter)
	}
	return nil
}

// failed wraps a Redis error and marks the store down for RedisRetryAfter,
// unless the caller's context ended (then that is the error).
func (r *Redis) failed(ctx context.Context, err error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	r.downUntil.Store(time.Now().Add(RedisRetryAfter).UnixNano())
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, r.cfg.Addr, err)
}

// reply is what every script but renew returns: {code, generation, st, u,
// age of st in µs (-1: none), µs until the current claim's lease ends}.
type reply struct {
	code     int64
	gen      int64
	st, u    string
	age      int64
	leaseEnd int64
}

func (r *Redis) run(ctx context.Context, s *redis.Script, key string, args ...any) (reply, error) {
	v, err := s.Run(ctx, r.client, r.scriptKeys(key), args...).Result()
	if err != nil {
		return reply{}, r.failed(ctx, err)
	}
	a, ok := v.([]any)
	if !ok || len(a) != 6 {
		return reply{}, fmt.Errorf("versioncache: redis: unexpected script reply %v", v)
	}
	var rep reply
	rep.code, _ = a[0].(int64)
	if g, _ := a[1].(string); g != "" {
		rep.gen, _ = strconv.ParseInt(g, 10, 64)
	}
	rep.st, _ = a[2].(string)
	rep.u, _ = a[3].(string)
	rep.age, _ = a[4].(int64)
	rep.leaseEnd, _ = a[5].(int64)
	return rep, nil
}

// scriptKeys are the KEYS of a script on key: its hash, the key index and
// the index's sweep cursor.
func (r *Redis) scriptKeys(key string) []string {
	return []string{r.cfg.KeyPrefix + key, r.keys, r.sweep}
}

// indexSuffix follows KeyPrefix in the name of the key index. A resource
// key would have to be exactly this string (a NUL byte and "index") to
// collide with it.
const indexSuffix = "\x00index"

// newGen returns a fresh generation: random, positive, never 0 (no key).
func newGen() int64 { return rand.Int64N(math.MaxInt64) + 1 }

func genArg(g int64) string { return strconv.FormatInt(g, 10) }

// The scripts. Times are Redis TIME in µs (Lua numbers are doubles: exact
// up to 2^53 µs, the year 2255); string.format('%.0f') keeps them integral.
const luaPrelude = `
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function fmt(n) return string.format('%.0f', n) end
local function age(at, now)
  if at then return now - tonumber(at) end
  return -1
end
local function alive(at, now, ttl)
  return at and now - tonumber(at) < tonumber(ttl)
end
local k = KEYS[1]
-- index adds k to the table's key index (KEYS[2]): a sorted set of the
-- keys without KeyPrefix, all of score 0, read by prefix with ZRANGEBYLEX
-- (List, prefix purge, guard children). A key that left Redis (expired)
-- stays a member until a sweep finds it gone: each key new to the index
-- checks the next two members at a cursor (KEYS[3]) that walks the index
-- round and round, so the index holds at most about twice the live keys.
-- The index and its cursor live as long as the longest-lived key.
local function index(life)
  local p = string.sub(KEYS[2], 1, -7)
  local added = redis.call('ZADD', KEYS[2], 0, string.sub(k, #p + 1))
  redis.call('PEXPIRE', KEYS[2], life)
  if added == 0 then return end
  local from = redis.call('GET', KEYS[3])
  local lo = '-'
  if from and from ~= '' then lo = '(' .. from end
  local ms = redis.call('ZRANGEBYLEX', KEYS[2], lo, '+', 'LIMIT', 0, 2)
  local last = ''
  for _, x in ipairs(ms) do
    if redis.call('EXISTS', p .. x) == 0 then redis.call('ZREM', KEYS[2], x) end
    last = x
  end
  if #ms < 2 then last = '' end
  redis.call('SET', KEYS[3], last, 'PX', life)
end
`

var (
	// read returns the key's generation and state; with ARGV[1] ~= '' it
	// first gives a key without one the generation ARGV[1] (ReadStart).
	// ARGV: 1 new generation or '', 2 key life (ms).
	readScript = redis.NewScript(luaPrelude + `
local now = now_us()
local h = redis.call('HMGET', k, 'g', 'st', 'u', 'at', 'c', 'ce')
local g = h[1]
if not g and ARGV[1] ~= '' then
  g = ARGV[1]
  redis.call('HSET', k, 'g', g)
  redis.call('PEXPIRE', k, ARGV[2])
  index(ARGV[2])
end
local left = 0
if h[5] then left = math.max(tonumber(h[6] or '0') - now, 0) end
return {1, g or '', h[2] or '', h[3] or '', age(h[4], now), left}
`)

	// claim takes the key's write claim if no live one holds it, and
	// returns the state. A claim whose lease ran out uncommitted is taken
	// over and the key becomes uncertain: that write may have happened.
	// ARGV: 1 token, 2 lease (µs), 3 ttl (µs), 4 new generation, 5 key life (ms).
	claimScript = redis.NewScript(luaPrelude + `
local now = now_us()
local h = redis.call('HMGET', k, 'c', 'ce', 'st', 'u', 'at', 'g')
local c, st, u, at, g = h[1], h[3], h[4], h[5], h[6]
if c == ARGV[1] then
  return {1, g or '', st or '', u or '', age(at, now), 0}
end
local ce = tonumber(h[2] or '0')
if c and ce > now then
  return {0, g or '', st or '', u or '', age(at, now), ce - now}
end
if c then
  if not alive(at, now, ARGV[3]) then
    st = false
    redis.call('HDEL', k, 'st')
  end
  u, at = '1', fmt(now)
  redis.call('HSET', k, 'u', u, 'at', at)
  redis.call('HDEL', k, 't')
end
redis.call('HSET', k, 'c', ARGV[1], 'ce', fmt(now + tonumber(ARGV[2])), 'g', ARGV[4])
redis.call('PEXPIRE', k, ARGV[5])
index(ARGV[5])
return {1, ARGV[4], st or '', u or '', age(at, now), 0}
`)

	// commit stores a write's result and releases its claim, if the claim
	// is still this write's; otherwise it stores nothing but marks the key
	// uncertain (and taints a claim that took it over: that write's result
	// may be overtaken by this one's).
	// ARGV: 1 token, 2 st, 3 u, 4 new generation, 5 key life (ms), 6 ttl (µs),
	// 7 channel, 8 key.
	commitScript = redis.NewScript(luaPrelude + `
local now = now_us()
local h = redis.call('HMGET', k, 'c', 't', 'lc', 'at')
if h[1] == ARGV[1] then
  local u = ARGV[3]
  if h[2] then u = '1' end
  redis.call('HSET', k, 'st', ARGV[2], 'at', fmt(now), 'g', ARGV[4], 'lc', ARGV[1])
  if u == '1' then redis.call('HSET', k, 'u', '1') else redis.call('HDEL', k, 'u') end
  redis.call('HDEL', k, 'c', 'ce', 't')
  redis.call('PEXPIRE', k, ARGV[5])
  index(ARGV[5])
  redis.call('PUBLISH', ARGV[7], ARGV[8])
  return {1, ARGV[4], ARGV[2], u, 0, 0}
end
if h[3] == ARGV[1] then
  return {2, '', '', '', -1, 0}
end
if not alive(h[4], now, ARGV[6]) then redis.call('HDEL', k, 'st') end
redis.call('HSET', k, 'u', '1', 'at', fmt(now), 'g', ARGV[4])
if h[1] then redis.call('HSET', k, 't', '1') end
redis.call('PEXPIRE', k, ARGV[5])
index(ARGV[5])
return {0, ARGV[4], '', '1', 0, 0}
`)

	// release gives up the claim without a result.
	// ARGV: 1 token, 2 channel, 3 key, 4 ttl (µs).
	releaseScript = redis.NewScript(luaPrelude + `
local now = now_us()
local h = redis.call('HMGET', k, 'c', 't', 'at')
if h[1] ~= ARGV[1] then return {0, '', '', '', -1, 0} end
redis.call('HDEL', k, 'c', 'ce', 't')
if h[2] then
  if not alive(h[3], now, ARGV[4]) then redis.call('HDEL', k, 'st') end
  redis.call('HSET', k, 'u', '1', 'at', fmt(now))
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {1, '', '', '', -1, 0}
`)

	// renew extends the lease of a claim that is still this write's.
	// ARGV: 1 token, 2 lease (µs), 3 key life (ms).
	renewScript = redis.NewScript(luaPrelude + `
if redis.call('HGET', k, 'c') ~= ARGV[1] then return 0 end
redis.call('HSET', k, 'ce', fmt(now_us() + tonumber(ARGV[2])))
redis.call('PEXPIRE', k, ARGV[3])
index(ARGV[3])
return 1
`)

	// observe records what a read saw if the key still has the
	// generation the read started with and no claim (held, or left by a
	// node that died). ARGV[2] is the new state if the state is still
	// alive, ARGV[3] if it expired. A read that changes nothing only
	// refreshes a state older than ttl/4.
	// ARGV: 1 generation at read start, 2 st if alive, 3 st if expired,
	// 4 new generation, 5 ttl (µs), 6 key life (ms).
	observeScript = redis.NewScript(luaPrelude + `
local now = now_us()
local h = redis.call('HMGET', k, 'g', 'c', 'at', 'st', 'u')
local g, c, at, st, u = h[1], h[2], h[3], h[4], h[5]
if not g or g ~= ARGV[1] or c then
  return {0, g or '', st or '', u or '', age(at, now), 0}
end
local live = alive(at, now, ARGV[5])
local nxt = ARGV[3]
if live then nxt = ARGV[2] end
if live and not u and st == nxt then
  if now - tonumber(at) >= tonumber(ARGV[5]) / 4 then
    at = fmt(now)
    redis.call('HSET', k, 'at', at)
    redis.call('PEXPIRE', k, ARGV[6])
    index(ARGV[6])
  end
  return {1, g, st, '', age(at, now), 0}
end
redis.call('HSET', k, 'st', nxt, 'at', fmt(now), 'g', ARGV[4])
redis.call('HDEL', k, 'u')
redis.call('PEXPIRE', k, ARGV[6])
index(ARGV[6])
return {1, ARGV[4], nxt, '', 0, 0}
`)

	// record replaces the state unconditionally.
	// ARGV: 1 st, 2 u, 3 new generation, 4 key life (ms).
	recordScript = redis.NewScript(luaPrelude + `
redis.call('HSET', k, 'st', ARGV[1], 'at', fmt(now_us()), 'g', ARGV[3])
if ARGV[2] == '1' then redis.call('HSET', k, 'u', '1') else redis.call('HDEL', k, 'u') end
redis.call('PEXPIRE', k, ARGV[4])
index(ARGV[4])
return {1, ARGV[3], ARGV[1], ARGV[2], 0, 0}
`)

	// purge forgets the state but keeps a new generation (so that a read
	// in flight is not recorded) and any claim (a write in flight still
	// commits). It reports whether a live state was forgotten.
	// ARGV: 1 new generation, 2 ttl (µs), 3 key life (ms).
	purgeScript = redis.NewScript(luaPrelude + `
if redis.call('EXISTS', k) == 0 then return {0, '', '', '', -1, 0} end
local now = now_us()
local at = redis.call('HGET', k, 'at')
local code = 0
if alive(at, now, ARGV[2]) then code = 1 end
redis.call('HDEL', k, 'st', 'at', 'u')
redis.call('HSET', k, 'g', ARGV[1])
redis.call('PEXPIRE', k, ARGV[3])
index(ARGV[3])
return {code, ARGV[1], '', '', -1, 0}
`)

	// prune removes from the key index (KEYS[1]) the members of ARGV
	// whose keys are gone, and returns how many it removed. The check and
	// the removal are one step, so a key created meanwhile keeps its member.
	pruneScript = redis.NewScript(`
local p = string.sub(KEYS[1], 1, -7)
local n = 0
for _, m in ipairs(ARGV) do
  if redis.call('EXISTS', p .. m) == 0 then n = n + redis.call('ZREM', KEYS[1], m) end
end
return n
`)
)

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

// Get implements Store. It always asks Redis: a write path (guards) may use
// it, and the near-cache may be behind another node's write.
func (r *Redis) Get(ctx context.Context, key string) (conflict.State, bool, error) {
	if err := r.check(); err != nil {
		return conflict.State{}, false, err
	}
	rep, err := r.run(ctx, readScript, key, "", r.lifeMS)
	if err != nil {
		return conflict.State{}, false, err
	}
	e := r.learn(key, rep, false)
	r.count(e.found)
	return e.state, e.found, nil
}

// ReadStart implements Store: the token is the key's generation as this
// node knows it (0: unknown, the read will not be recorded).
func (r *Redis) ReadStart(key string) ReadToken {
	if e := r.nearGet(key); e != nil {
		return ReadToken(e.gen)
	}
	if r.check() != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	rep, err := r.run(ctx, readScript, key, genArg(newGen()), r.lifeMS)
	if err != nil {
		return 0
	}
	return ReadToken(r.learn(key, rep, true).gen)
}

// Observe implements Store.
func (r *Redis) Observe(ctx context.Context, key string, tok ReadToken, version string, missing bool) (bool, error) {
	if r.closed.Load() {
		return false, ErrClosed
	}
	if tok <= 0 {
		return false, nil
	}
	e := r.nearGet(key)
	if e != nil && e.gen == int64(tok) {
		// Hot path: the node knows the key's state at the read's start,
		// and it already says what the read saw.
		now := r.now()
		if r.cfg.NearCache > 0 && e.found && now-e.seen < int64(r.cfg.NearCache) &&
			now-e.stored < int64(r.cfg.TTL)/4 && says(&e.state, version, missing) {
			return true, nil
		}
	} else if e != nil {
		// The node learned another generation since the read started:
		// the key moved on (or, if replies crossed, this read is merely
		// not recorded).
		return false, nil
	} else {
		// The state at the read's start is not known here any more
		// (evicted): learn the current one; if the key moved on since the
		// read started, the read is not recorded.
		if err := r.check(); err != nil {
			return false, err
		}
		rep, err := r.run(ctx, readScript, key, "", r.lifeMS)
		if err != nil {
			return false, err
		}
		if e = r.learn(key, rep, false); e.gen != int64(tok) {
			return false, nil
		}
	}
	if err := r.check(); err != nil {
		return false, err
	}
	var live, dead conflict.State
	if missing {
		live, dead = e.state.Missing(), conflict.State{}.Missing()
	} else {
		live, dead = e.state.Observed(version), conflict.State{}.Observed(version)
	}
	if !e.found {
		live = dead
	}
	rep, err := r.run(ctx, observeScript, key, genArg(int64(tok)), encodeState(live), encodeState(dead),
		genArg(newGen()), r.ttlUS, r.lifeMS)
	if err != nil {
		return false, err
	}
	r.learn(key, rep, false)
	return rep.code == 1, nil
}

// Record implements Store.
func (r *Redis) Record(ctx context.Context, key string, s conflict.State) error {
	if err := r.check(); err != nil {
		return err
	}
	rep, err := r.run(ctx, recordScript, key, encodeState(s), uncertainArg(s.Uncertain), genArg(newGen()), r.lifeMS)
	if err != nil {
		return err
	}
	r.learn(key, rep, false)
	return nil
}

func uncertainArg(u bool) string {
	if u {
		return "1"
	}
	return ""
}

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
		cmds := make([]*redis.Cmd, len(keys))
		pipe := r.client.Pipeline()
		for j, k := range keys {
			cmds[j] = readScript.Eval(ctx, pipe, r.scriptKeys(k), "", r.lifeMS)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, "", r.failed(ctx, err)
		}
		var gone []any
		for j, cmd := range cmds {
			v, _ := cmd.Slice()
			if len(v) != 6 {
				continue
			}
			if g, _ := v[1].(string); g == "" {
				gone = append(gone, keys[j]) // expired: no generation left
				continue
			}
			st, _ := v[2].(string)
			u, _ := v[3].(string)
			age, _ := v[4].(int64)
			s, err := decodeState(st, u)
			if err != nil || age < 0 || age >= r.ttlUS {
				continue
			}
			if len(items) <= limit {
				items = append(items, Item{Key: keys[j], State: s})
			}
		}
		if len(gone) > 0 {
			// Not needed for the answer: an error only leaves them for later.
			_ = pruneScript.Run(ctx, r.client, []string{r.keys}, gone...).Err()
		}
		if len(keys) < listBatch {
			break
		}
		from = keys[len(keys)-1] + "\x00"
	}
	return page(items, limit)
}

// Stats implements Store. Hits and Misses count Claim and Get; Evictions,
// Rejections, Bytes and MaxBytes are the near-cache's. Entries is the size
// of the table's key index in Redis, asked on each call (0 when Redis does
// not answer within statsTimeout): like the memory store's, it also counts
// keys that expired but were not swept yet.
func (r *Redis) Stats() Stats {
	r.guard.RLock()
	if r.closed.Load() {
		r.guard.RUnlock()
		return Stats{}
	}
	st := Stats{
		Hits:       r.hits.Load(),
		Misses:     r.misses.Load(),
		Evictions:  r.evictions.Load(),
		Rejections: r.rejections.Load(),
		Bytes:      r.near.MaxCost() - r.near.RemainingCost(),
		MaxBytes:   r.cfg.NearBytes,
	}
	r.guard.RUnlock()
	if r.check() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), min(r.cfg.Timeout, statsTimeout))
		defer cancel()
		if n, err := r.client.ZCard(ctx, r.keys).Result(); err == nil {
			st.Entries = uint64(n)
		}
	}
	return st
}

// statsTimeout bounds the Redis call of Stats (a metrics scrape).
const statsTimeout = 500 * time.Millisecond

func (r *Redis) count(hit bool) {
	if hit {
		r.hits.Add(1)
	} else {
		r.misses.Add(1)
	}
}

// Close implements Store. Claims held in Redis are left to their leases.
func (r *Redis) Close() error {
	r.guard.Lock()
	if r.closed.Swap(true) {
		r.guard.Unlock()
		return nil
	}
	close(r.closing)
	r.near.Close()
	r.guard.Unlock()
	err := r.pubsub.Close()
	<-r.subDone
	if cerr := r.client.Close(); err == nil {
		err = cerr
	}
	return err
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

// countHook counts round trips to Redis.
type countHook struct{ n *atomic.Uint64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// The state encoding in Redis (field st) is the JSON of conflict.State
// without the uncertain flag, which lives in its own field, u, so that the
// scripts can set it. JSON keeps every field a later version of State adds,
// and is deterministic: the observe script compares encodings.
func encodeState(s conflict.State) string {
	s.Uncertain = false
	b, _ := json.Marshal(s) // strings, bools and a slice of strings: no error
	return string(b)
}

func decodeState(st, u string) (conflict.State, error) {
	var s conflict.State
	if st != "" {
		if err := json.Unmarshal([]byte(st), &s); err != nil {
			return conflict.State{}, fmt.Errorf("versioncache: redis: malformed state: %w", err)
		}
	}
	s.Uncertain = u == "1"
	return s, nil
}

var (
	_ Store = (*Redis)(nil)
	_ Lease = (*redisLease)(nil)
)
