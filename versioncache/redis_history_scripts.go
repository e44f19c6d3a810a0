package versioncache

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts of the shared history (redis_history.go), in lua/; each
// starts with the history prelude (the table's keys, cost and eviction
// helpers).
var (
	//go:embed lua/history_prelude.lua
	luaHistoryPrelude string
	//go:embed lua/history_add.lua
	luaHistoryAdd string
	//go:embed lua/history_get.lua
	luaHistoryGet string
	//go:embed lua/history_purge.lua
	luaHistoryPurge string
)

var (
	// historyAddScript records a representation and evicts.
	historyAddScript = redis.NewScript(luaHistoryPrelude + luaHistoryAdd)
	// historyGetScript returns representations and marks them used.
	historyGetScript = redis.NewScript(luaHistoryPrelude + luaHistoryGet)
	// historyPurgeScript drops the entries of keys (a key, a prefix).
	historyPurgeScript = redis.NewScript(luaHistoryPrelude + luaHistoryPurge)
)
