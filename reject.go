package caddyconflict

import (
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

// reject answers a write with the problem document of rej (RFC 9457), or
// in report mode marks the response with Conflict-Report and lets the
// write go on. It reports whether the request was answered. It is the one
// place a rejection is written: the claim is released first (a slow client
// never holds the key), then the metrics, the log line, the placeholders
// and the problem.
func (x *exchange) reject(rej *conflict.Rejection) bool {
	h, r := x.h, x.r
	if x.repl != nil {
		x.repl.Set("http.conflict.current_version", quoteOrEmpty(x.state.Version))
	}
	if h.report {
		if x.reported == "" {
			countDecision("reported") // once per write, however many rules it breaks
		}
		x.reported = rej.Kind
		x.w.Header().Set("Conflict-Report", string(rej.Kind))
		if x.repl != nil {
			x.repl.Set("http.conflict.outcome", "reported")
		}
		h.logger.Info("write would be rejected (report mode)", zap.String("key", x.key), zap.String("kind", string(rej.Kind)),
			zap.String("method", r.Method), zap.String("current_version", x.state.Version), zap.Strings("claimed", x.pre.Versions))
		return false
	}
	x.release(x.state)
	status := rej.StatusCode()
	if origin := r.Header["Origin"]; len(origin) > 0 {
		h.cors.allow(origin[0], x.w.Header())
	}
	if x.repl != nil {
		x.repl.Set("http.conflict.outcome", string(rej.Kind))
	}
	countDecision(string(rej.Kind))
	h.logger.Info("write rejected", zap.String("key", x.key), zap.String("kind", string(rej.Kind)), zap.Int("status", status),
		zap.String("method", r.Method), zap.String("current_version", x.state.Version), zap.Strings("claimed", x.pre.Versions))
	writeProblem(x.w, r, x.problem(rej, status))
	return true
}

// problem is the problem document of rej, with the members and headers
// its kind carries.
func (x *exchange) problem(rej *conflict.Rejection, status int) *conflict.Problem {
	h, s, pre := x.h, x.state, x.pre
	p := conflict.NewProblem(h.ProblemBase, rej.Kind, status, rej.Detail)
	p.Instance = x.r.URL.Path
	p.Resource = x.r.URL.Path
	p.Related = rej.Related
	hdr := x.w.Header()
	switch rej.Kind {
	case conflict.KindStaleVersion, conflict.KindAlreadyExists:
		if s.Known() {
			p.CurrentVersion = conflict.Quote(s.Version)
			if h.scheme != conflict.SchemeLastModified {
				hdr.Set("ETag", p.CurrentVersion)
			}
		}
		p.ProvidedVersions = pre.Versions
		if pre.Kind == conflict.PreconditionDate {
			p.ProvidedVersions = []string{pre.Date.UTC().Format(http.TimeFormat)}
		}
		if rej.Kind == conflict.KindStaleVersion && h.history != nil {
			x.mergeHelp(p)
		}
	case conflict.KindWriteInProgress:
		secs := int(time.Duration(h.LockTimeout).Seconds())
		hdr.Set("Retry-After", strconv.Itoa(max(1, min(secs, 5))))
	case conflict.KindStoreUnavailable:
		hdr.Set("Retry-After", strconv.Itoa(int(versioncache.RedisRetryAfter.Seconds())))
	}
	return p
}

// relay answers the write with the upstream's refusal of verify's read
// (401, 403, 404), as the upstream would have answered the write itself:
// its status, headers and body; no version, no problem.
func (x *exchange) relay(a answer) {
	x.release(x.state)
	x.relayed = true
	setPlaceholders(x.repl, "refused", "")
	countDecision("refused")
	hdr := x.w.Header()
	for name, vals := range a.header {
		switch name {
		case "Etag", "Last-Modified", "Content-Length", "Content-Encoding", "Transfer-Encoding":
			continue // they describe the read's representation, not this answer
		}
		if x.h.scheme == conflict.SchemeHeader && name == x.h.Version.Field {
			continue
		}
		hdr[name] = vals
	}
	hdr.Set("Content-Length", strconv.Itoa(len(a.body)))
	x.w.WriteHeader(a.status)
	if x.r.Method != http.MethodHead {
		_, _ = x.w.Write(a.body)
	}
}

// writeProblem sends p as the whole response.
func writeProblem(w http.ResponseWriter, r *http.Request, p *conflict.Problem) {
	body := p.JSON()
	hdr := w.Header()
	hdr.Set("Content-Type", conflict.ContentType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Del("Content-Encoding")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// quoteOrEmpty is v as in an ETag header, or "" for an unknown version.
func quoteOrEmpty(v string) string {
	if v == "" {
		return ""
	}
	return conflict.Quote(v)
}
