package caddyconflict

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// This file holds every read the proxy makes of the upstream on its own
// behalf: the re-read of an uncertain key, preflight, verify, the guards'
// probes and the merge help's fetch of a representation. Each is sent
// through the rest of the handler chain (so reverse_proxy, its load
// balancing and its transport apply) with ask, and its answer is
// classified once, by outcome.

// Reasons for reading the upstream before a write is decided; they label
// the caddy_conflict_rereads_total metric.
const (
	rereadUncertain = "uncertain" // an earlier write's outcome was not seen, or its record was dropped
	rereadPreflight = "preflight" // the version is unknown and `preflight` is on
	rereadVerify    = "verify"    // a rejection is confirmed first (`verify`)
)

// outcome is what an answer of the upstream to a read tells.
type outcome uint8

const (
	readFailed     outcome = iota // no answer, or one that tells nothing (5xx, an unexpected 4xx)
	readFound                     // 2xx: the resource exists
	readMissing                   // 404, 410: it does not
	readNotAllowed                // 405, 501: this method is not served; another may be
	readRefused                   // 401, 403: the upstream will not tell this client
	readRedirect                  // 301, 302, 307, 308
)

// answer is the upstream's answer to one read.
type answer struct {
	outcome outcome
	status  int
	header  http.Header
	// body holds the body when it was asked for and fit in max_body
	// without a content coding; nil otherwise.
	body []byte
}

func classify(status int) outcome {
	switch {
	case status >= 200 && status < 300:
		return readFound
	case status == http.StatusNotFound || status == http.StatusGone:
		return readMissing
	case status == http.StatusMethodNotAllowed || status == http.StatusNotImplemented:
		return readNotAllowed
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return readRefused
	case status == http.StatusMovedPermanently, status == http.StatusFound,
		status == http.StatusTemporaryRedirect, status == http.StatusPermanentRedirect:
		return readRedirect
	}
	return readFailed
}

// ask sends req (made with readRequest) through next and classifies the
// answer. With withBody the body is kept, up to max_body.
func (h *Handler) ask(req *http.Request, next caddyhttp.Handler, withBody bool) answer {
	cw := &capture{header: make(http.Header)}
	if withBody {
		req.Header.Set("Accept-Encoding", "identity") // a version or representation is read from it
		cw.body, cw.limit = new(bytes.Buffer), h.MaxBody
	}
	err := next.ServeHTTP(cw, req)
	status := cw.status
	if status == 0 {
		if err != nil {
			return answer{outcome: readFailed, header: cw.header}
		}
		status = http.StatusOK // a handler that wrote nothing answered 200
	} else if err != nil && withBody {
		return answer{outcome: readFailed, status: status, header: cw.header} // a body cut short
	}
	a := answer{outcome: classify(status), status: status, header: cw.header}
	if withBody && !cw.overflow && cw.header.Get("Content-Encoding") == "" {
		a.body = cw.body.Bytes()
	}
	return a
}

// version is the version an answer carries: from its headers, or with
// body versions from its body ("" if none).
func (h *Handler) version(a answer) string {
	if !h.bodyVersions() {
		return h.versionOf(a.header)
	}
	if a.body == nil {
		return ""
	}
	return h.versionOfBody(a.header, a.body)
}

// reread asks the upstream for the current version of r's resource (HEAD,
// then GET when HEAD tells nothing; GET only with body versions) and
// returns the state that answer implies, or ok == false when the upstream
// could not say. refused reports that it would not tell this client (401,
// 403, or 405/501 to every read).
func (h *Handler) reread(r *http.Request, next caddyhttp.Handler, s conflict.State) (_ conflict.State, ok, refused bool) {
	methods := []string{http.MethodHead, http.MethodGet}
	if h.bodyVersions() {
		methods = methods[1:] // the version is in the body
	}
	notAllowed := false
	for _, m := range methods {
		req := readRequest(r, m)
		a := h.ask(req, next, h.bodyVersions())
		switch a.outcome {
		case readFound:
			v := h.version(a)
			if v == "" && m == http.MethodHead {
				continue
			}
			return s.Observed(variantVersion(a.header, req.Header, v)), true, false
		case readMissing:
			return s.Missing(), true, false
		case readNotAllowed:
			notAllowed = true
			continue
		case readRefused:
			return s, false, true
		default:
			return s, false, false
		}
	}
	return s, false, notAllowed // 405 or 501 to every read: refused too
}

// rereadFor is reread, counted under reason.
func (h *Handler) rereadFor(reason string, r *http.Request, next caddyhttp.Handler, s conflict.State) (conflict.State, bool, bool) {
	s, ok, refused := h.reread(r, next, s)
	countReread(reason, ok)
	return s, ok, refused
}

// confirm is verify's read: a GET of r's resource with the client's own
// request headers (credentials included), its body kept, so that an answer
// that refuses the client (401, 403, 404) can go back to it instead of a
// rejection. ok reports whether the answer told the current state, which
// it returns.
func (h *Handler) confirm(r *http.Request, next caddyhttp.Handler, s conflict.State) (answer, conflict.State, bool) {
	req := readRequest(r, http.MethodGet)
	a := h.ask(req, next, true)
	countReread(rereadVerify, a.outcome == readFound || a.outcome == readMissing)
	switch a.outcome {
	case readFound:
		if v := h.version(a); v != "" {
			return a, s.Observed(variantVersion(a.header, req.Header, v)), true
		}
	case readMissing:
		return a, s.Missing(), true
	}
	return a, s, false
}

// refuses reports whether the answer to verify's read is one the client
// gets instead of a rejection: the upstream would not show it the resource.
func (a answer) refuses() bool {
	return a.status == http.StatusUnauthorized || a.status == http.StatusForbidden || a.status == http.StatusNotFound
}

// probe asks the upstream whether the resource at path p exists: HEAD, or
// GET where HEAD is not allowed. A redirect to p + "/" (how WebDAV servers
// such as nginx answer for a collection) is followed once. It returns the
// version the answer carried when it tells one from the headers.
func (h *Handler) probe(r *http.Request, next caddyhttp.Handler, p string) (existence, string) {
	followed := false
	for _, m := range [...]string{http.MethodHead, http.MethodGet} {
		a := h.ask(probeRequest(r, m, p), next, false)
		if a.outcome == readRedirect && !followed {
			if u, err := r.URL.Parse(a.header.Get("Location")); err == nil && u.Path == p+"/" &&
				(u.Host == "" || strings.EqualFold(u.Host, r.Host)) {
				p, followed = u.Path, true
				a = h.ask(probeRequest(r, m, p), next, false)
			}
		}
		switch a.outcome {
		case readFound:
			if h.bodyVersions() {
				return exists, "" // the version is in a body the probe does not read
			}
			return exists, h.versionOf(a.header)
		case readMissing:
			return missing, ""
		case readNotAllowed:
			continue
		}
		return unknown, ""
	}
	return unknown, ""
}

// fetchRepresentation asks the upstream for the JSON representation of
// r's resource and records it in the history under the version it carries;
// ok reports whether it is the representation of version. It runs under
// the key's write claim, when a stale write meets a current version whose
// representation the history does not hold.
func (h *Handler) fetchRepresentation(r *http.Request, next caddyhttp.Handler, key, version string) ([]byte, bool) {
	req := readRequest(r, http.MethodGet)
	if h.scheme == conflict.SchemeHeader {
		req.Header.Del(h.Version.Field)
	}
	a := h.ask(req, next, true)
	if a.status != http.StatusOK || a.body == nil || !isJSON(a.header.Get("Content-Type")) {
		return nil, false
	}
	v := h.version(a)
	if v == "" {
		return nil, false
	}
	h.history.Add(key, v, a.body)
	return a.body, conflict.SameVersion(v, version)
}

// readRequest is r turned into a bodiless, unconditional read (HEAD or GET)
// of the same URL, keeping the client's other headers (authorization).
func readRequest(r *http.Request, method string) *http.Request {
	req := r.Clone(r.Context())
	req.Method = method
	req.Body = http.NoBody
	req.ContentLength = 0
	req.GetBody = nil
	for _, name := range [...]string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
		"If-Range", "If", "Content-Type", "Content-Length", "Content-Encoding", "Expect", "Range", "Destination"} {
		req.Header.Del(name)
	}
	return req
}

// probeRequest is r turned into a bodiless, unconditional read of path p on
// the same host, keeping the client's other headers (authorization).
func probeRequest(r *http.Request, method, p string) *http.Request {
	req := readRequest(r, method)
	req.URL.Path, req.URL.RawPath, req.URL.RawQuery, req.URL.Fragment = p, "", "", ""
	req.RequestURI = req.URL.RequestURI()
	return req
}

// capture is the ResponseWriter of a read the proxy makes: it keeps the
// header and the status and, when asked, the body up to limit.
type capture struct {
	header   http.Header
	status   int
	body     *bytes.Buffer
	limit    int64
	overflow bool
}

func (c *capture) Header() http.Header { return c.header }

func (c *capture) WriteHeader(status int) {
	if c.status == 0 && status >= 200 {
		c.status = status
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	if c.body != nil && !c.overflow {
		if int64(c.body.Len()+len(p)) > c.limit {
			c.overflow = true
		} else {
			c.body.Write(p)
		}
	}
	return len(p), nil
}

func (c *capture) FlushError() error { return nil }
