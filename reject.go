package caddyconflict

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
		if ce := h.logger.Check(zap.InfoLevel, "write would be rejected (report mode)"); ce != nil {
			ce.Write(x.logFields(rej, rej.StatusCode())...)
		}
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
	if ce := h.logger.Check(zap.InfoLevel, "write rejected"); ce != nil {
		ce.Write(x.logFields(rej, status)...)
	}
	p := x.problem(rej, status)
	h.emit(eventRejected, map[string]any{"kind": string(rej.Kind), "key": x.key, "status": status, "method": r.Method})
	if h.HandleErrors {
		// Caddy's handle_errors writes the answer, with the problem's
		// members as placeholders.
		x.gone = x.handOver(p)
		return true
	}
	writeProblem(x.w, r, p)
	return true
}

// logFields are the fields of a rejection's log line. Keys may carry user
// identifiers: at Info they are logged only with log_keys.
func (x *exchange) logFields(rej *conflict.Rejection, status int) []zap.Field {
	f := []zap.Field{zap.String("kind", string(rej.Kind)), zap.Int("status", status), zap.String("method", x.r.Method),
		zap.String("current_version", x.state.Version), zap.Strings("claimed", x.pre.Versions)}
	if x.h.LogKeys || x.h.logger.Core().Enabled(zap.DebugLevel) {
		f = append(f, zap.String("key", x.key))
	}
	return f
}

// handOver sets the problem's members as {http.conflict.problem.*}
// placeholders ({http.conflict.problem} is the whole document) and returns
// the error that hands the rejection to the site's handle_errors routes.
// The problem's headers (ETag, Retry-After) are set already.
func (x *exchange) handOver(p *conflict.Problem) error {
	body := p.JSON()
	if x.repl != nil {
		x.repl.Set("http.conflict.problem", string(body))
		var members map[string]any
		if json.Unmarshal(body, &members) == nil {
			for name, v := range members {
				if s, ok := v.(string); ok {
					x.repl.Set("http.conflict.problem."+name, s)
				} else if raw, err := json.Marshal(v); err == nil {
					x.repl.Set("http.conflict.problem."+name, string(raw))
				}
			}
		}
		x.repl.Set("http.conflict.problem.kind", p.Type[strings.LastIndexAny(p.Type, "#/")+1:])
	}
	return caddyhttp.Error(p.Status, rejectionError{p})
}

// rejectionError is a rejection handed to handle_errors.
type rejectionError struct{ p *conflict.Problem }

func (e rejectionError) Error() string { return e.p.Title + ": " + e.p.Detail }

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
