package versioncache

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts of the Redis store, one step of the protocol each, in
// lua/ (each file says what its ARGV are). Every script but prune starts
// with the prelude: its helpers, the key k, the table's epoch and the
// key index.
var (
	//go:embed lua/prelude.lua
	luaPrelude string
	//go:embed lua/read.lua
	luaRead string
	//go:embed lua/claim.lua
	luaClaim string
	//go:embed lua/commit.lua
	luaCommit string
	//go:embed lua/release.lua
	luaRelease string
	//go:embed lua/renew.lua
	luaRenew string
	//go:embed lua/observe.lua
	luaObserve string
	//go:embed lua/record.lua
	luaRecord string
	//go:embed lua/purge.lua
	luaPurge string
	//go:embed lua/prune.lua
	luaPrune string
	//go:embed lua/epoch.lua
	luaEpoch string
)

var (
	// readScript returns a key's generation and state (ReadStart, Get, List).
	readScript = redis.NewScript(luaPrelude + luaRead)
	// claimScript takes a key's write claim and returns its state.
	claimScript = redis.NewScript(luaPrelude + luaClaim)
	// commitScript stores a write's result and releases its claim.
	commitScript = redis.NewScript(luaPrelude + luaCommit)
	// releaseScript gives a claim up without a result.
	releaseScript = redis.NewScript(luaPrelude + luaRelease)
	// renewScript extends a held claim's lease.
	renewScript = redis.NewScript(luaPrelude + luaRenew)
	// observeScript records what a read saw, unless the key moved on.
	observeScript = redis.NewScript(luaPrelude + luaObserve)
	// recordScript replaces a key's state unconditionally.
	recordScript = redis.NewScript(luaPrelude + luaRecord)
	// purgeScript forgets a key's state, keeping a new generation.
	purgeScript = redis.NewScript(luaPrelude + luaPurge)
	// pruneScript removes index members whose keys are gone.
	pruneScript = redis.NewScript(luaPrune)
	// epochScript starts a new epoch of the table (a clock step was seen).
	epochScript = redis.NewScript(luaPrelude + luaEpoch)
)
