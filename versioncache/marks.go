package versioncache

import (
	"sync"
	"unsafe"
)

// What the memory store keeps beside its entries so that a write can tell
// apart the ways of finding nothing (Snapshot): read fences and drop marks.
//
// Read fences (SPEC: a late read must not resurrect a version that a write
// superseded): per slot of keys, the time of the last Claim, Commit, Record
// or Purge of any key in it. A read that started before its key's fence is
// not recorded. Slots are shared by keys, which only errs on the safe side:
// a read that is not recorded. A key's slot is taken from the top bits of
// its hash, which also pick its claim shard, so all the keys of a slot
// share one claim shard mutex, under which fences are read and written.
//
// Drop marks: a key the proxy wrote (Commit or Record) whose entry then left
// the key index within the ttl of that write (evicted, refused by the
// admission policy, dropped from a full set buffer) is *dropped*: the next
// write must re-read the upstream. The entry carries the time of the key's
// last write (stored.wrote); when it leaves the index, a mark of the key's
// 64-bit hash and that time is set, and a claim that finds no entry reports
// the key dropped while its mark is younger than the ttl. A key the proxy
// never wrote, or wrote longer than the ttl ago, or purged since, has no
// live mark and is *unknown*. A mark goes back into the entry when the key
// is stored again, so marks hold only the keys that are out of the table.
//
// Marks live in sets of markWays; a key may be in either of two sets picked
// by its hash, and goes into the one with more room (two choices keep the
// sets evenly filled). A key without a mark is reported dropped only if a
// key of its sets has the same 64-bit hash (about one claim in 10^13), or
// if one of its sets spilled. A set spills when it is full of live marks
// and both of a new mark's sets are: the oldest mark is displaced and, until
// its ttl ends, every key of the set without a mark is reported dropped
// (the safe direction: a re-read, never a lost update). There is about one
// mark per 512 bytes of MaxBytes, about as many as the table holds entries:
// sets spill only when most of that many written keys were dropped within
// one ttl (the table turned over its written keys). A purge in a spilled set
// leaves a "purged" mark, so that the purged key is unknown, as Purge
// promises.
//
// A key's marks are changed and read under its index shard mutex, so that
// its entry leaving the index and its mark being set are one step; each
// set also has a mutex, since keys of every index shard share it (lock
// order: claim shard, index shard, the lower set, the higher set).

// markWays is the number of marks in a set.
const markWays = 8

// markSet holds up to markWays marks. A mark is the key's hash and a time:
// at > 0 the key's last write (dropped while at is younger than the ttl),
// at < 0 the key was purged at -at (unknown, whatever spill says), at == 0
// a free way.
type markSet struct {
	mu    sync.Mutex
	h     [markWays]uint64
	at    [markWays]int64
	spill int64 // the newest time of a live mark displaced from the set
}

const markSetBytes = int64(unsafe.Sizeof(markSet{}))

// markSets returns the number of mark sets for a table of maxBytes: about
// one mark per 512 bytes (an entry costs 400 or more).
func markSets(maxBytes int64) int64 {
	return clampPow2(maxBytes/(512*markWays), 64, 1<<17)
}

// markPair is the two sets of a key, locked.
type markPair struct{ a, b *markSet }

// lockMarks returns h's sets, locked; unlock them with unlock.
func (m *Memory) lockMarks(h uint64) markPair {
	n := uint64(len(m.marks) - 1)
	i, j := h&n, (h>>24)&n
	if i > j {
		i, j = j, i
	}
	p := markPair{&m.marks[i], &m.marks[j]}
	p.a.mu.Lock()
	if p.b != p.a {
		p.b.mu.Lock()
	}
	return p
}

func (p markPair) unlock() {
	if p.b != p.a {
		p.b.mu.Unlock()
	}
	p.a.mu.Unlock()
}

// find returns the set and way holding h's mark, or nil.
func (p markPair) find(h uint64) (*markSet, int) {
	for _, s := range [2]*markSet{p.a, p.b} {
		for i := range s.h {
			if s.at[i] != 0 && s.h[i] == h {
				return s, i
			}
		}
	}
	return nil, 0
}

// spilled reports whether either set spilled within the ttl.
func (p markPair) spilled(now, ttl int64) bool {
	return liveMark(p.a.spill, now, ttl) || liveMark(p.b.spill, now, ttl)
}

// put stores the mark (h, at) in the set with more room, in a free or
// expired way, else in place of the oldest purged mark (costs that key a
// needless re-read at most), else of the oldest drop mark (the set spills).
func (p markPair) put(h uint64, at, now, ttl int64) {
	sa, ia, fa := p.a.victim(now, ttl)
	sb, ib, fb := p.b.victim(now, ttl)
	s, i := sa, ia
	if fb > fa || fa == 0 && fb == 0 && displaceBefore(sb.at[ib], sa.at[ia]) {
		s, i = sb, ib
	}
	if old := s.at[i]; old > 0 && liveMark(old, now, ttl) {
		s.spill = max(s.spill, old)
	}
	s.h[i], s.at[i] = h, at
}

// victim returns the way of s a new mark would take, and how many ways of
// s are free or expired.
func (s *markSet) victim(now, ttl int64) (*markSet, int, int) {
	v, free := -1, 0
	for i := range s.at {
		switch {
		case !liveMark(s.at[i], now, ttl):
			if free == 0 {
				v = i
			}
			free++
		case free == 0 && (v < 0 || displaceBefore(s.at[i], s.at[v])):
			v = i
		}
	}
	return s, v, free
}

// displaceBefore reports whether the live mark a goes before the live mark
// b: purged marks first, then the oldest.
func displaceBefore(a, b int64) bool {
	if (a < 0) != (b < 0) {
		return a < 0
	}
	return abs(a) < abs(b)
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// liveMark reports whether a mark's time (positive or negative) is younger
// than the ttl.
func liveMark(at, now, ttl int64) bool {
	return at != 0 && now-abs(at) < ttl
}

// mark sets the drop mark of h at wrote, the key's last write, if that is
// younger than the ttl. The key's index shard mutex must be held.
func (m *Memory) mark(h uint64, wrote, now int64) {
	ttl := m.ttlNanos()
	if wrote <= 0 || now-wrote >= ttl {
		return
	}
	p := m.lockMarks(h)
	defer p.unlock()
	if s, i := p.find(h); s != nil {
		if at := s.at[i]; at < wrote && -at < wrote {
			s.at[i] = wrote // a newer write, or the first since a purge
		}
		return
	}
	p.put(h, wrote, now, ttl)
}

// takeMark removes h's drop mark and returns the time of the key's last
// write it holds (0: none live), so that a key stored again carries it in
// its entry. The key's index shard mutex must be held.
func (m *Memory) takeMark(h uint64, now int64) int64 {
	p := m.lockMarks(h)
	defer p.unlock()
	s, i := p.find(h)
	if s == nil || s.at[i] < 0 {
		return 0 // none, or purged: the new entry starts afresh
	}
	at := s.at[i]
	s.at[i] = 0
	if !liveMark(at, now, m.ttlNanos()) {
		return 0
	}
	return at
}

// forgetMark makes h unknown: its mark is removed, or, if one of its sets
// spilled, it becomes a purged mark. The key's index shard mutex must be
// held.
func (m *Memory) forgetMark(h uint64, now int64) {
	ttl := m.ttlNanos()
	p := m.lockMarks(h)
	defer p.unlock()
	spilled := p.spilled(now, ttl)
	s, i := p.find(h)
	switch {
	case s != nil && spilled:
		s.at[i] = -now
	case s != nil:
		s.at[i] = 0
	case spilled:
		p.put(h, -now, now, ttl)
	}
}

// droppedMark reports whether h, a key the index does not hold, is
// dropped. The key's index shard mutex must be held.
func (m *Memory) droppedMark(h uint64, now int64) bool {
	ttl := m.ttlNanos()
	p := m.lockMarks(h)
	defer p.unlock()
	if s, i := p.find(h); s != nil {
		return s.at[i] > 0 && liveMark(s.at[i], now, ttl)
	}
	return p.spilled(now, ttl)
}

// fence returns the read fence of h's slot. The claim shard mutex must be
// held.
func (m *Memory) fence(h uint64) *int64 { return &m.fences[h>>m.fenceShift] }
