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
	Addr string
	// Addrs, when set, replaces Addr: the seed nodes of a Redis Cluster
	// (Cluster), or the sentinels (MasterName). A standalone Redis takes
	// one address.
	Addrs []string
	// Cluster connects to a Redis Cluster (KeyPrefix must then carry a
	// hash tag, so that a table's keys share one slot; DB must be 0).
	Cluster bool
	// MasterName connects through Redis Sentinel to the primary monitored
	// under this name; Addrs are the sentinels.
	MasterName string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (Username and Password are for the data nodes).
	SentinelUsername, SentinelPassword string
	Username, Password                 string
	DB                                 int
	// TLS, when set, connects with TLS (to every node and sentinel). An
	// empty ServerName checks each node's certificate against its address.
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
// without the index enter it on their next change. In a Redis Cluster the
// KeyPrefix's hash tag keeps all of them in one slot (redis_client.go). A
// hash's fields:
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
// once, so the first read of a key on a node is learned too; a key Redis
// does not hold gets no generation (absentToken: recorded only if it is
// still absent, and only a found resource), so reads of unseen paths store
// nothing.
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
	client  redis.UniversalClient
	pubsub  *redis.PubSub
	channel string
	// keys is the table's key index, a sorted set (see index in
	// lua/prelude.lua); table its record and grace its grace marker
	// (redis_epoch.go).
	keys, table, grace string
	ttlUS              int64 // ttl in µs
	leaseUS            int64
	lifeMS             string // PEXPIRE of a key: it outlives its state and its claim
	graceMS            string // how long keys are dropped after a new epoch: ttl + lease

	view    tableView
	sweeper sweeper
	watches watches // claims of other nodes this node watches (takeover)

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

// NewRedis opens a Redis store. It does not wait for Redis: a Redis that is
// down now is retried on every use (reads pass meanwhile, writes get
// on_store_error).
func NewRedis(cfg RedisConfig) (*Redis, error) {
	if err := cfg.checkTopology(); err != nil {
		return nil, err
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
		table:   cfg.KeyPrefix + tableSuffix,
		grace:   cfg.KeyPrefix + graceSuffix,
		graceMS: strconv.FormatInt((cfg.TTL + cfg.Lease).Milliseconds(), 10),
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
	if r.client, err = newRedisClient(&cfg, countHook{&r.roundTrips}); err != nil {
		near.Close()
		return nil, err
	}
	// Errors name the endpoint: the address, or the topology and its
	// seeds or sentinels.
	r.cfg.Addr = cfg.endpoint()
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

// reply is what every script returns (result in lua/prelude.lua).
type reply struct {
	code     int64
	gen      int64
	st, u    string
	age      int64 // of st in µs; -1: no trusted state
	leaseEnd int64 // µs until the current claim's lease ends (a hint)
	// dropped: no trusted state although the key may have been written
	// through the proxy before Redis lost data (redis_epoch.go).
	dropped bool
	// holder and renewals name the claim that holds the key (code 0 of
	// claim), for a node that watches it (takeover).
	holder   string
	renewals int64
	// jumped: Redis's clock jumped against this node's (redis_epoch.go).
	jumped bool
	// epoch is the table's epoch the script ran in.
	epoch string
	// young: the claim was granted within a lease of a loss; µs its
	// holder must wait before acting on it (lua/claim.lua).
	young int64
}

// run runs a script on key with args and the table's four arguments.
func (r *Redis) run(ctx context.Context, s *redis.Script, key string, args ...any) (reply, error) {
	sent := r.now()
	table := r.tableArgs()
	v, err := s.Run(ctx, r.client, r.scriptKeys(key), append(args, table...)...).Result()
	if err != nil {
		return reply{}, r.failed(ctx, err)
	}
	rep, err := r.parse(v, sent)
	if err == nil && rep.jumped {
		// No age measured across the jump can be trusted: a new epoch
		// (every key is re-read before its next write for the grace), and
		// this reply's state is not trusted either.
		if err := r.startEpoch(ctx, table[0]); err != nil {
			return reply{}, err
		}
		rep.st, rep.u, rep.age, rep.dropped = "", "", -1, true
	}
	return rep, err
}

// startEpoch starts a new epoch unless the table's epoch is no longer
// known, the one the node knew before the reply that showed a clock jump
// (another node started one since: that one will do).
func (r *Redis) startEpoch(ctx context.Context, known any) error {
	table := r.tableArgs()
	table[0] = known
	sent := r.now()
	v, err := epochScript.Run(ctx, r.client, r.scriptKeys(tableSuffix+"-epoch"), table...).Result()
	if err != nil {
		return r.failed(ctx, err)
	}
	_, err = r.parse(v, sent)
	return err
}

// parse reads a script's reply, sent at sent (Redis.now()), and takes what
// it says of the table.
func (r *Redis) parse(v any, sent int64) (reply, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 14 {
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
	epoch, _ := a[6].(string)
	seq, _ := a[7].(int64)
	d, _ := a[8].(int64)
	rep.dropped = d == 1
	now, _ := a[9].(int64)
	rep.holder, _ = a[10].(string)
	rep.renewals, _ = a[11].(int64)
	if n, _ := a[12].(int64); n > 0 {
		r.added(int(n))
	}
	rep.young, _ = a[13].(int64)
	rep.epoch = epoch
	rep.jumped = r.see(epoch, seq, now, sent, r.now())
	return rep, nil
}

// scriptKeys are the KEYS of a script on key: its hash, the table's key
// index, its record and its grace marker (lua/prelude.lua).
func (r *Redis) scriptKeys(key string) []string {
	return []string{r.cfg.KeyPrefix + key, r.keys, r.table, r.grace}
}

// newGen returns a fresh generation: random, positive, never 0 (no key).
func newGen() int64 { return rand.Int64N(math.MaxInt64) + 1 }

func genArg(g int64) string { return strconv.FormatInt(g, 10) }

// Get implements Store. It always asks Redis: a write path (guards) may use
// it, and the near-cache may be behind another node's write.
func (r *Redis) Get(ctx context.Context, key string) (conflict.State, bool, error) {
	if err := r.check(); err != nil {
		return conflict.State{}, false, err
	}
	rep, err := r.run(ctx, readScript, key, r.ttlUS)
	if err != nil {
		return conflict.State{}, false, err
	}
	e := r.learn(key, rep, false)
	r.count(e.found)
	return e.state, e.found, nil
}

// ReadStart implements Store: the token is the key's generation as this
// node knows it (0: unknown, the read will not be recorded), or
// absentToken when Redis holds nothing for the key.
func (r *Redis) ReadStart(key string) ReadToken {
	if e := r.nearGet(key); e != nil {
		return ReadToken(e.gen)
	}
	if r.check() != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout)
	defer cancel()
	rep, err := r.run(ctx, readScript, key, r.ttlUS)
	if err != nil {
		return 0
	}
	if rep.gen == 0 {
		return absentToken
	}
	return ReadToken(r.learn(key, rep, true).gen)
}

// absentToken is the token of a read of a key Redis did not hold: the read
// is recorded only if the key is still absent when it ends, and only if it
// found the resource (a 404 of a key nobody wrote stores nothing, so reads
// of random paths cost Redis no memory).
const absentToken ReadToken = -1

// Observe implements Store.
func (r *Redis) Observe(ctx context.Context, key string, tok ReadToken, version string, missing bool) (bool, error) {
	if r.closed.Load() {
		return false, ErrClosed
	}
	if tok == absentToken {
		if missing {
			return false, nil
		}
		return r.observe(ctx, key, "absent", conflict.State{}.Observed(version), conflict.State{}.Observed(version))
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
		rep, err := r.run(ctx, readScript, key, r.ttlUS)
		if err != nil {
			return false, err
		}
		if e = r.learn(key, rep, false); e.gen != int64(tok) {
			return false, nil
		}
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
	return r.observe(ctx, key, genArg(int64(tok)), live, dead)
}

// observe runs the observe script: live is the new state if the key's is
// still trusted, dead if not.
func (r *Redis) observe(ctx context.Context, key, gen string, live, dead conflict.State) (bool, error) {
	if err := r.check(); err != nil {
		return false, err
	}
	rep, err := r.run(ctx, observeScript, key, gen, encodeState(live), encodeState(dead),
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
