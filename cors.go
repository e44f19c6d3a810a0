package caddyconflict

import (
	"net/http"
	"strings"
	"sync"
)

// This file makes the proxy's own answers readable by browsers on other
// origins (README "Cross-origin clients"): a rejection carries the
// Access-Control-Allow-Origin and -Allow-Credentials that the upstream sent
// the same Origin (learned from the answers that pass through, the CORS
// preflight among them), and answers that allow an origin expose ETag to
// its scripts (the Fetch standard's CORS-safelisted response headers do not
// include it).

// exposed are the headers a web app needs to read from the proxy's answers.
var exposed = [...]string{"ETag", "Retry-After", "Conflict-Merged", "Conflict-Report"}

// maxOrigins bounds the origins remembered; past it the memory starts over.
const maxOrigins = 1024

// corsAllow is what the upstream answered one origin.
type corsAllow struct {
	origin      string // Access-Control-Allow-Origin
	credentials string // Access-Control-Allow-Credentials
}

// corsMemory remembers, per Origin, how the upstream allowed it.
type corsMemory struct {
	mu sync.Mutex
	m  map[string]corsAllow
}

// learn records the CORS headers of an upstream answer to a request from
// origin, and exposes the proxy's headers on that answer.
func (c *corsMemory) learn(origin string, hdr http.Header) {
	allow := firstValue(hdr["Access-Control-Allow-Origin"])
	if allow == "" || c == nil {
		return
	}
	expose(hdr)
	a := corsAllow{origin: allow, credentials: firstValue(hdr["Access-Control-Allow-Credentials"])}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[origin] == a {
		return
	}
	if c.m == nil || len(c.m) >= maxOrigins {
		c.m = make(map[string]corsAllow)
	}
	c.m[origin] = a
}

// allow adds to the proxy's own answer to origin the CORS headers the
// upstream sent that origin, if it allowed it.
func (c *corsMemory) allow(origin string, hdr http.Header) {
	if c == nil {
		return
	}
	c.mu.Lock()
	a, ok := c.m[origin]
	c.mu.Unlock()
	if !ok {
		return
	}
	hdr.Set("Access-Control-Allow-Origin", a.origin)
	if a.credentials != "" {
		hdr.Set("Access-Control-Allow-Credentials", a.credentials)
	}
	if a.origin != "*" {
		hdr.Add("Vary", "Origin")
	}
	expose(hdr)
}

// expose adds the proxy's headers to Access-Control-Expose-Headers, keeping
// the names already there.
func expose(hdr http.Header) {
	have := strings.Join(hdr["Access-Control-Expose-Headers"], ",")
	if strings.TrimSpace(have) == "*" {
		return // every header is exposed (requests without credentials)
	}
	var add []string
	for _, name := range exposed {
		if !containsToken(have, name) {
			add = append(add, name)
		}
	}
	if len(add) == 0 {
		return
	}
	if have != "" {
		add = append([]string{have}, add...)
	}
	hdr.Set("Access-Control-Expose-Headers", strings.Join(add, ", "))
}

// containsToken reports whether the comma-separated list holds name,
// case-insensitively.
func containsToken(list, name string) bool {
	for t := range strings.SplitSeq(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), name) {
			return true
		}
	}
	return false
}
