package caddyconflict

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

// This file is the write path (README "How writes are decided"): a guarded
// write goes through the steps of serveWrite in order. A step either lets the write go
// on or returns a rejection; reject (reject.go) answers it, in exactly one
// place. A write no step stopped is forwarded under its key's write claim,
// and its outcome is recorded.

// exchange is one guarded write on its way through the proxy.
type exchange struct {
	h    *Handler
	w    http.ResponseWriter
	r    *http.Request
	next caddyhttp.Handler
	repl *caddy.Replacer
	key  string
	hkey string // where the key's representations are kept (history_scope)
	// method is the write's method as judged: the request's, or the one
	// its method-override header names; sent is the request's own.
	method, sent string

	pre   conflict.Precondition // the version the client says the write is based on
	lease versioncache.Lease    // the key's write claim; nil while not held
	snap  versioncache.Snapshot // what the claim found
	state conflict.State        // the key's state the write is decided on

	gone      error         // the client went away: answer nothing
	relayed   bool          // the client got the upstream's refusal of verify's read
	unchecked bool          // forwarded without the remaining steps (no claim could be had)
	reported  conflict.Kind // report mode: the rejection the write would have got
	merged    bool          // merge auto rebased the write onto the current version
	committed bool          // the claim was committed or released
	answered  bool          // a step answered the write: it is not forwarded
}

// serveWrite decides on a guarded write and, if it may pass, forwards it
// while holding the key's write claim, then records its outcome. method is
// the write's method as judged (see exchange.method).
func (h *Handler) serveWrite(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, key string,
	repl *caddy.Replacer, method string) error {
	x := exchange{h: h, w: w, r: r, next: next, repl: repl, key: key, method: method, sent: r.Method}
	if h.history != nil {
		x.hkey = h.historyKey(key, repl)
	}
	if method != r.Method {
		// Judged as the overriding method; sent to the upstream as it came.
		r.Method = method
		defer func() { r.Method = x.sent }()
	}
	defer x.settle()
	// The steps, in order; each lets the write go on or stops it.
	_ = x.goOn(x.readPrecondition()) && // If-Match, If-Unmodified-Since, If-None-Match: *, the version header
		x.goOn(x.receiveBody()) && // up to max_body, before the claim: a slow client holds no one back
		x.goOn(x.readBodyClaim()) && // else the version field of a JSON body (version json)
		x.goOn(x.claimKey()) && // one write per key at a time: wait for the key's claim
		x.goOn(x.reread()) && // an uncertain or dropped key (or preflight): ask the upstream first
		x.goOn(x.checkGuards()) && // parent, children, reference
		x.goOn(x.decide()) // the decision table; verify, then merge auto, before a rejection
	if x.answered {
		return x.gone // nil, or the rejection handed to handle_errors
	}
	return x.forward()
}

// goOn takes a step's result: a rejection is answered (reject.go); it
// reports whether the next step runs. A write that is forwarded unchecked
// (no claim could be had) skips the rest but is still forwarded.
func (x *exchange) goOn(rej *conflict.Rejection) bool {
	if rej != nil && x.reject(rej) || x.gone != nil || x.relayed {
		x.answered = true
		return false
	}
	return !x.unchecked
}

// readPrecondition reads the write's precondition headers. One that cannot
// be parsed is a 400 (in report mode the write goes on as unconditional).
func (x *exchange) readPrecondition() *conflict.Rejection {
	h := x.h
	pre, err := conflict.ParsePrecondition(x.r.Header, h.scheme, h.Version.Field)
	if err != nil {
		return conflict.InvalidPrecondition(err)
	}
	x.pre = pre
	return nil
}

// receiveBody reads the body, up to max_body, before the key's claim is
// taken (a larger body streams to the upstream under the claim). A body
// that cannot be received ends the exchange: the client is gone or broken.
func (x *exchange) receiveBody() *conflict.Rejection {
	r := x.r
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if _, _, err := readUpTo(r, x.h.MaxBody); err != nil {
		setPlaceholders(x.repl, "aborted", "")
		x.gone = caddyhttp.Error(http.StatusBadRequest, err)
	}
	return nil
}

// readBodyClaim reads, with `version json` and no precondition header, the
// version the JSON body claims. A body that cannot be judged is rejected
// only when a precondition is required.
func (x *exchange) readBodyClaim() *conflict.Rejection {
	if x.pre.Kind != conflict.PreconditionNone || x.h.scheme != conflict.SchemeJSON {
		return nil
	}
	pre, rej := x.h.bodyClaim(x.r)
	x.pre = pre
	if rej != nil && x.h.policy.RequirePrecondition {
		return rej
	}
	return nil
}

// claimKey waits (up to lock_timeout) for the key's write claim, and takes
// the key's state under it. A store that cannot be reached either rejects
// the write or lets it through unchecked (on_store_error).
func (x *exchange) claimKey() *conflict.Rejection {
	h, ctx := x.h, x.r.Context()
	start := time.Now()
	lease, snap, err := h.store.Claim(ctx, x.key, time.Duration(h.LockTimeout))
	observeLockWait(start)
	switch {
	case err == nil:
		x.lease, x.snap, x.state = lease, snap, snap.State
		return nil
	case errors.Is(err, versioncache.ErrClaimTimeout):
		x.unchecked, x.state = true, snap.State
		return conflict.WriteInProgress()
	case ctx.Err() != nil:
		setPlaceholders(x.repl, "aborted", "")
		x.gone = caddyhttp.Error(499, ctx.Err())
		return nil
	}
	// The shared store cannot be reached (README "Scaling out").
	x.unchecked = true
	action := "forwarded"
	if h.rejectOnStoreError && !h.report {
		action = "rejected"
	}
	countStoreError(action)
	h.emit(eventStoreError, map[string]any{"key": x.key, "action": action, "error": err.Error()})
	if h.rejectOnStoreError {
		return conflict.StoreUnavailable()
	}
	if ce := h.logger.Check(zap.DebugLevel, "write forwarded unchecked: version store unavailable"); ce != nil {
		ce.Write(zap.String("key", x.key), zap.String("method", x.r.Method), zap.Error(err))
	}
	return nil
}

// reread asks the upstream for the key's version before deciding, when
// the table cannot be trusted (README "Words"): the key is *uncertain* (an
// earlier write's outcome was never seen), or *dropped* (written through
// the proxy, then its record was lost) and the write claims a version, or,
// with preflight, unknown. An uncertain key that cannot be re-read is a
// 502; so is a dropped one, unless the upstream refuses to tell (401, 403,
// 405): then it will judge the write itself, and the write is forwarded.
// A key the proxy never wrote is never dropped.
func (x *exchange) reread() *conflict.Rejection {
	h := x.h
	uncertain := x.state.Uncertain
	dropped := !x.snap.Found && x.snap.Dropped &&
		x.pre.Kind != conflict.PreconditionNone && x.pre.Kind != conflict.PreconditionForeign
	preflight := h.Preflight && !x.state.Known() && !x.state.Deleted
	if !uncertain && !dropped && !preflight {
		return nil
	}
	reason := rereadPreflight
	if uncertain || dropped {
		reason = rereadUncertain
	}
	s, ok, refused := h.rereadFor(reason, x.r, x.next, x.state)
	switch {
	case ok:
		x.state = s
		return nil
	case uncertain:
		x.state.Uncertain = true
		return conflict.UpstreamUnavailable()
	case dropped && !refused:
		return conflict.RecordLost()
	}
	return nil
}

// checkGuards applies the `guard` lines.
func (x *exchange) checkGuards() *conflict.Rejection {
	return x.h.checkGuards(x.r, x.next, x.key, x.state)
}

// decide applies the decision table. With verify, a stale-version or
// deleted verdict is confirmed by a fresh read first; with history, a
// stale write gets its merge help and, with merge auto, may be rebased.
func (x *exchange) decide() *conflict.Rejection {
	h := x.h
	d := conflict.Decide(x.state, x.pre, h.policy)
	if h.Verify && (d.Kind == conflict.KindStaleVersion || d.Kind == conflict.KindDeleted) {
		a, s, ok := h.confirm(x.r, x.next, x.state)
		if a.refuses() && !h.report {
			x.relay(a) // a client the upstream refuses learns nothing about versions
			return nil
		}
		if ok {
			x.state = s
			d = conflict.Decide(x.state, x.pre, h.policy)
		}
	}
	if d.Kind == conflict.KindStaleVersion && x.rebase() {
		return nil
	}
	return d.Rejection(x.pre, h.hint)
}

// forward sends the write to the upstream and, when the key's claim is
// held, records the outcome and releases it.
func (x *exchange) forward() error {
	h, r := x.h, x.r
	if x.reported == "" && !x.merged {
		setPlaceholders(x.repl, "forwarded", quoteOrEmpty(x.state.Version))
		countDecision("forwarded")
		if ce := h.logger.Check(zap.DebugLevel, "write forwarded"); ce != nil {
			ce.Write(zap.String("key", x.key), zap.String("method", r.Method),
				zap.String("current_version", x.state.Version), zap.Strings("claimed", x.pre.Versions))
		}
	}
	if x.lease == nil {
		_, err := x.send()
		return err
	}
	if !versioncache.Held(x.lease) {
		// This node stalled (or could not renew its claim) for most of a
		// lease: another node may have taken the claim over and written
		// since, so what was decided here is no longer safe to send
		// (README "When Redis fails"). The client may retry.
		x.committed = true
		x.lease.Release()
		if x.reject(conflict.WriteInProgress()) {
			return x.gone
		}
		// Report mode sends it all the same: its outcome is not recorded
		// under a claim this node may not hold, so the key is uncertain.
		_, err := x.send()
		_ = h.store.Record(context.WithoutCancel(r.Context()), x.key, conflict.State{Uncertain: true})
		return err
	}
	ctx := r.Context()
	based := basedOn(x.state, x.pre)
	ow, err := x.send()
	result := conflict.WriteResult{Method: r.Method, Status: ow.status, Version: ow.version}
	switch {
	case r.Method == http.MethodPost:
		result.Version = "" // a POST's version belongs to the resource it created (Location)
	case r.URL.RawQuery != "" && !h.keyHasQuery:
		result.Version = "" // the version of another representation (?view=...), not the key's
	}
	if h.history != nil && err == nil {
		h.rememberWrite(x.hkey, r, ow) // before the claim is released: the next write may merge onto it
	}
	if h.history != nil && r.Method == http.MethodDelete && ow.status >= 200 && ow.status < 300 {
		h.dropHistory(x.key) // a resource created again may restart its versions
	}
	x.release(x.state.AfterWrite(based, result))
	if r.Method == http.MethodPost && ow.status >= 200 && ow.status < 300 {
		h.learnLocation(ctx, r, ow)
	}
	h.afterGuardedWrite(ctx, r, ow.status)
	return err
}

// send forwards the request to the upstream with the method it came with.
func (x *exchange) send() (*observer, error) {
	x.r.Method = x.sent
	defer func() { x.r.Method = x.method }()
	return x.h.forward(x.w, x.r, x.next)
}

// release commits s as the key's state and releases the claim, once.
func (x *exchange) release(s conflict.State) {
	if x.lease == nil || x.committed {
		return
	}
	x.committed = true
	if err := x.lease.Commit(context.WithoutCancel(x.r.Context()), s); err != nil {
		// The claim is left to its lease (or was lost): the next write
		// finds the key uncertain and re-reads it.
		x.h.logger.Warn("recording a write's outcome failed", zap.String("key", x.key), zap.Error(err))
	}
}

// settle releases a claim still held when the exchange ends otherwise (a
// panic such as http.ErrAbortHandler included): an unseen outcome is
// uncertain.
func (x *exchange) settle() {
	if x.lease != nil && !x.committed {
		s := x.state
		s.Uncertain = true
		x.release(s)
	}
}

// basedOn is the version a write was based on: the current version when it
// was decided, if known, else the versions the client claimed.
func basedOn(s conflict.State, p conflict.Precondition) []string {
	if s.Known() {
		return []string{s.Version}
	}
	if p.Kind == conflict.PreconditionVersions {
		return p.Versions
	}
	return nil
}
