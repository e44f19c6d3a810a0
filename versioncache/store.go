// Package versioncache holds the version table: what the proxy knows about
// each resource key, and the per-key write claims that serialize writes.
//
// The Store interface is shaped so that a shared implementation (Redis) can
// give the same guarantees as the in-process one: a write's check and claim
// are one atomic step (Claim), and its result is recorded and the claim
// released in another (Lease.Commit).
package versioncache

import (
	"context"
	"errors"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// ErrClaimTimeout is returned by Claim when another write held the key for
// longer than the wait allowed.
var ErrClaimTimeout = errors.New("versioncache: write claim timed out")

// ErrClosed is returned by every method of a store that has been closed.
var ErrClosed = errors.New("versioncache: store closed")

// ReadToken marks the moment a read was forwarded; see Store.Observe.
type ReadToken int64

// Snapshot is what Claim found for a key. A key is in one of the states
// the contract names:
//   - known: Found, State says what the proxy knows;
//   - uncertain: Found and State.Uncertain: a write's outcome was never
//     seen; the next write re-reads the upstream first;
//   - dropped: not Found, Dropped: the proxy wrote the key through itself
//     (Commit or Record) within the ttl and then lost the entry (evicted,
//     refused by the cache, lost by a shared store). The next write that
//     carries a precondition must re-read the version from the upstream
//     instead of trusting "unknown";
//   - unknown: not Found, not Dropped: the proxy has no knowledge of the key
//     (never seen, expired, purged, or only read before its entry was
//     lost): the write is forwarded.
//
// A key the proxy never wrote is never reported dropped, except in the
// rare conservative fallback each store documents (Memory: marks.go).
type Snapshot struct {
	State conflict.State
	// Found is false when the store holds nothing for the key.
	Found bool
	// Dropped is true when Found is false although the proxy wrote the key
	// within the ttl (see above).
	Dropped bool
}

// Store is a version table.
type Store interface {
	// Get returns the key's state without claiming it.
	Get(ctx context.Context, key string) (conflict.State, bool, error)

	// ReadStart returns the token to give to Observe for a read that is
	// about to be forwarded.
	ReadStart(key string) ReadToken

	// Observe applies what a read of key saw, unless a write to key was
	// decided or completed after tok was taken (a late read must not
	// resurrect a version that a write superseded) or is in flight. It
	// reports whether the state was recorded.
	// With version == "" and missing == false, the current version becomes
	// unknown; with missing == true, the key becomes a tombstone.
	// version may name one variant of a negotiated resource (made by
	// conflict.VariantVersion): a store hands it to conflict.State.Observed
	// as it is, which replaces only that variant's version; compared with
	// a stored State.Version it never matches, so a shortcut that skips an
	// unchanged read simply does not apply to it.
	Observe(ctx context.Context, key string, tok ReadToken, version string, missing bool) (bool, error)

	// Record unconditionally replaces the key's state and marks the key as
	// written (used for changes made by requests that are not guarded
	// writes: POST Location targets, MKCOL, COPY/MOVE destinations).
	Record(ctx context.Context, key string, s conflict.State) error

	// Claim waits up to timeout (or until ctx ends) for the exclusive write
	// claim on key and returns it with the key's state at that moment: a
	// write that waited sees the state its predecessor committed.
	// It returns ErrClaimTimeout when the wait ran out (the Snapshot then
	// holds the state as seen without the claim) and ctx.Err() when ctx
	// ended first.
	Claim(ctx context.Context, key string, timeout time.Duration) (Lease, Snapshot, error)

	// Purge forgets one key (prefix == false) or every key starting with it
	// and reports how many keys it forgot. The next write to a purged key
	// is decided as unknown (Snapshot.Dropped is false), and a read that was
	// in flight during the purge is not recorded.
	Purge(ctx context.Context, key string, prefix bool) (int, error)

	// List returns up to limit keys that start with prefix and sort after
	// the cursor after, in order, with their states; next is the cursor of
	// the following page ("" on the last page). limit <= 0 means
	// DefaultListLimit.
	List(ctx context.Context, prefix, after string, limit int) (items []Item, next string, err error)

	// Stats reports the store's counters for metrics.
	Stats() Stats

	// Close releases the store. Afterwards every method returns ErrClosed
	// (Stats returns zeros); Close itself may be called more than once.
	Close() error
}

// DefaultListLimit is the page size of List when none is given.
const DefaultListLimit = 100

// The paging of List, shared by the stores: a listing walks its keys in
// order from listStart and collects up to limit+1 items; page cuts it.

// listStart is the smallest key a page of List may hold: the prefix, or the
// smallest key after the cursor.
func listStart(prefix, after string) string {
	if after == "" {
		return prefix
	}
	return max(prefix, after+"\x00")
}

// page returns up to limit of items, and the cursor of the next page (the
// last key returned) if items holds more.
func page(items []Item, limit int) ([]Item, string, error) {
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, items[limit-1].Key, nil
}

// Item is one key of a List page.
type Item struct {
	Key   string         `json:"key"`
	State conflict.State `json:"state"`
}

// Stats are a store's counters since it was opened.
type Stats struct {
	// Hits and Misses count the lookups of Get and Claim.
	Hits, Misses uint64
	// Evictions counts entries removed to make room; Expirations entries
	// removed because their ttl passed; Rejections entries never stored
	// (refused by the admission policy or dropped under load).
	Evictions, Expirations, Rejections uint64
	// Entries is the number of keys held.
	Entries uint64
	// Bytes is the estimated memory in use; MaxBytes the bound on it.
	Bytes, MaxBytes int64
}

// Lease is a held write claim. One of Commit or Release must be called;
// calls after the first are no-ops.
type Lease interface {
	// Commit stores the key's new state and releases the claim.
	Commit(ctx context.Context, s conflict.State) error
	// Release gives up the claim without changing the state.
	Release()
}
