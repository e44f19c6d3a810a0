package caddyconflict

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/cespare/xxhash/v2"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// bodyVersions reports whether versions come from response bodies
// (`version json` or `version hash`): the proxy then makes up the ETags
// clients see.
func (h *Handler) bodyVersions() bool {
	return h.scheme == conflict.SchemeJSON || h.scheme == conflict.SchemeHash
}

// versionOfBody computes the version a response body carries ("" if none).
func (h *Handler) versionOfBody(hdr http.Header, body []byte) string {
	switch h.scheme {
	case conflict.SchemeHash:
		return conflict.HashTag(body)
	case conflict.SchemeJSON:
		if !isJSON(hdr.Get("Content-Type")) {
			return ""
		}
		var buf [64]byte // the text of most version fields: no allocation but the tag's
		text, err := conflict.AppendLookup(buf[:0], body, h.pointer)
		if err != nil {
			return ""
		}
		return conflict.ScalarTagOf(text)
	}
	return ""
}

func isJSON(contentType string) bool {
	// What JSON APIs send, without mime.ParseMediaType's map: a bare
	// media type, or one with parameters that ParseMediaType would accept
	// or reject alike for the type (it is asked when there are any).
	switch contentType {
	case "application/json", "application/problem+json", "application/merge-patch+json":
		return true
	case "", "text/html", "text/plain", "application/octet-stream":
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// holdsBody reports whether the response to r must be held to compute its
// version: GETs in both modes, and writes with `version json` (a write's
// response may carry the new representation and its version field).
func (h *Handler) holdsBody(r *http.Request) bool {
	if !h.bodyVersions() {
		return false
	}
	return r.Method == http.MethodGet || (h.scheme == conflict.SchemeJSON && h.methods[r.Method])
}

// prepareBodyVersions adjusts a request for body versions before it is
// forwarded. Entity tags the proxy made up mean nothing to the upstream (an
// upstream that checks its own ETags would reject them), so they are
// removed; "*" is kept. The upstream is asked for an identity body, so that
// every client's version of one state is the same whatever it accepts
// (encode, outside this handler, still compresses for the client). It
// returns the If-None-Match tags the client sent, to answer 304 here.
func (h *Handler) prepareBodyVersions(r *http.Request) (ifNoneMatch []string) {
	hdr := r.Header
	for _, name := range [...]string{"If-Match", "If-None-Match"} {
		vals := hdr.Values(name)
		if len(vals) == 0 {
			continue
		}
		tags, any, ok := conflict.ParseTags(vals)
		if any {
			continue
		}
		if ok && name == "If-None-Match" {
			ifNoneMatch = tags
		}
		hdr.Del(name)
	}
	if h.holdsBody(r) {
		hdr.Set("Accept-Encoding", "identity")
	}
	return ifNoneMatch
}

// bodyVersioner holds a response body (up to max_body) to compute its
// version before the headers go out, then sends it with the made-up ETag.
// A body over max_body is streamed on without a version. The upstream's
// own ETag never reaches the client in these modes: clients would send it
// back, and it is not what versions are compared with.
//
// The body is copied once, into a pooled buffer sized from the upstream's
// Content-Length (the copy needed to send the ETag first); `version hash`
// hashes each piece as it is copied, `version json` scans the held body once
// (conflict.AppendLookup) in finish.
type bodyVersioner struct {
	caddyhttp.ResponseWriterWrapper
	h           *Handler
	req         *http.Request
	ifNoneMatch []string
	status      int
	holding     bool
	held        *[]byte       // from heldPool while holding
	digest      xxhash.Digest // version hash: the hash of what is held so far
}

// heldPool holds the buffers of held bodies. Buffers above maxPooledBody
// are left to the collector: one unusually large body must not stay
// pinned in every P's pool.
var heldPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledBody = 1 << 20

// hold starts holding: a pooled buffer with room for the upstream's
// Content-Length, when it sent one that fits max_body.
func (b *bodyVersioner) hold(hdr http.Header) {
	b.holding = true
	b.held = heldPool.Get().(*[]byte)
	*b.held = (*b.held)[:0]
	if n, err := strconv.ParseInt(firstValue(hdr["Content-Length"]), 10, 64); err == nil && n > int64(cap(*b.held)) && n <= b.h.MaxBody {
		*b.held = make([]byte, 0, n)
	}
	if b.h.scheme == conflict.SchemeHash {
		b.digest.Reset()
	}
}

// release gives the buffer back to the pool.
func (b *bodyVersioner) release() {
	if b.held == nil {
		return
	}
	if cap(*b.held) <= maxPooledBody {
		*b.held = (*b.held)[:0]
		heldPool.Put(b.held)
	}
	b.held = nil
}

func (b *bodyVersioner) WriteHeader(status int) {
	if status < 200 {
		b.ResponseWriter.WriteHeader(status)
		return
	}
	if b.status != 0 {
		return
	}
	b.status = status
	hdr := b.ResponseWriter.Header()
	hdr.Del("Etag")
	// A 206 holds a byte range, not the representation: never versioned.
	if status >= 200 && status < 300 && status != http.StatusPartialContent && b.h.holdsBody(b.req) && b.req.Method != http.MethodHead &&
		hdr.Get("Content-Encoding") == "" &&
		(b.h.scheme == conflict.SchemeHash || isJSON(hdr.Get("Content-Type"))) {
		b.hold(hdr)
		return
	}
	b.ResponseWriter.WriteHeader(status)
}

func (b *bodyVersioner) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.WriteHeader(http.StatusOK)
	}
	if !b.holding {
		return b.ResponseWriter.Write(p)
	}
	if int64(len(*b.held)+len(p)) > b.h.MaxBody {
		// Too large to version: send what was held and stream the rest.
		b.holding = false
		b.ResponseWriter.WriteHeader(b.status)
		_, err := b.ResponseWriter.Write(*b.held)
		b.release()
		if err != nil {
			return 0, err
		}
		return b.ResponseWriter.Write(p)
	}
	*b.held = append(*b.held, p...)
	if b.h.scheme == conflict.SchemeHash {
		_, _ = b.digest.Write(p)
	}
	return len(p), nil
}

func (b *bodyVersioner) ReadFrom(r io.Reader) (int64, error) {
	if b.status == 0 {
		b.WriteHeader(http.StatusOK)
	}
	if !b.holding {
		return b.ResponseWriterWrapper.ReadFrom(r)
	}
	return io.Copy(writerOnly{b}, r)
}

func (b *bodyVersioner) FlushError() error {
	if b.holding {
		return nil
	}
	return http.NewResponseController(b.ResponseWriter).Flush()
}

// finish sends a held response with its version as a strong ETag, or a 304
// when the client already has that version.
func (b *bodyVersioner) finish() error {
	if !b.holding {
		return nil
	}
	b.holding = false
	defer b.release()
	hdr := b.ResponseWriter.Header()
	body := *b.held
	var v string
	if b.h.scheme == conflict.SchemeHash {
		v = conflict.HashTagOf(b.digest.Sum64()) // hashed while held: HashTag(body)
	} else {
		v = b.h.versionOfBody(hdr, body)
	}
	if v != "" {
		hdr.Set("Etag", v)
		for _, t := range b.ifNoneMatch {
			// RFC 9110 section 13.1.2: If-None-Match uses weak comparison.
			if b.req.Method == http.MethodGet && conflict.SameVersion(t, v) {
				hdr.Del("Content-Length")
				hdr.Del("Content-Type")
				b.ResponseWriter.WriteHeader(http.StatusNotModified)
				return nil
			}
		}
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(body))}
	b.ResponseWriter.WriteHeader(b.status)
	_, err := b.ResponseWriter.Write(body)
	return err
}
