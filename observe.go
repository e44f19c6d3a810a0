package caddyconflict

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// observer watches a response on its way to the client. It reads the
// version when the status arrives (before encode, which wraps us, appends
// its suffix to the ETag) and buffers only responses whose status is in
// `normalize`; everything else streams through untouched. The wrapper is
// embedded by value: a streamed response costs one allocation, the
// observer itself.
type observer struct {
	caddyhttp.ResponseWriterWrapper
	h       *Handler
	req     *http.Request
	status  int
	version string

	buffering bool
	buf       *bytes.Buffer
	dropped   int64 // bytes beyond max_body, not kept
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// forward sends r to next through an observer and, once next returns,
// completes a buffered rewrite.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (*observer, error) {
	h.narrowAcceptEncoding(r)
	if h.history != nil {
		w = h.recordInto(w, r) // history: copy JSON representations as they stream (merge.go)
	}
	ow := &observer{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, req: r}
	if !h.bodyVersions() {
		err := next.ServeHTTP(ow, r)
		if ow.buffering {
			ow.finish()
		}
		return ow, err
	}
	bv := &bodyVersioner{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: ow}, h: h, req: r,
		ifNoneMatch: h.prepareBodyVersions(r)}
	err := next.ServeHTTP(bv, r)
	if ferr := bv.finish(); ferr != nil && err == nil {
		err = ferr
	}
	if ow.buffering {
		ow.finish()
	}
	return ow, err
}

func (o *observer) WriteHeader(status int) {
	if status < 200 {
		// 1xx (103 Early Hints, 100 Continue) are not the final answer.
		o.ResponseWriter.WriteHeader(status)
		return
	}
	if o.status != 0 {
		return
	}
	o.status = status
	o.version = o.h.versionOf(o.ResponseWriter.Header())
	if origin := o.req.Header["Origin"]; len(origin) > 0 {
		o.h.cors.learn(origin[0], o.ResponseWriter.Header())
	}
	if status < len(o.h.normalize) && o.h.normalize[status] {
		o.buffering = true
		o.buf = bufPool.Get().(*bytes.Buffer)
		o.buf.Reset()
		return
	}
	o.ResponseWriter.WriteHeader(status)
}

func (o *observer) Write(p []byte) (int, error) {
	if o.status == 0 {
		o.WriteHeader(http.StatusOK)
	}
	if !o.buffering {
		return o.ResponseWriter.Write(p)
	}
	room := o.h.MaxBody - int64(o.buf.Len())
	if room < 0 {
		room = 0
	}
	if int64(len(p)) > room {
		o.buf.Write(p[:room])
		o.dropped += int64(len(p)) - room
		return len(p), nil
	}
	return o.buf.Write(p)
}

func (o *observer) ReadFrom(r io.Reader) (int64, error) {
	if o.status == 0 {
		o.WriteHeader(http.StatusOK)
	}
	if !o.buffering {
		return o.ResponseWriterWrapper.ReadFrom(r)
	}
	return io.Copy(writerOnly{o}, r)
}

// FlushError keeps a buffered response from being sent early, and passes
// flushes of streamed responses (SSE) through.
func (o *observer) FlushError() error {
	if o.buffering {
		return nil
	}
	if o.status == 0 {
		o.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(o.ResponseWriter).Flush()
}

// writerOnly hides ReadFrom so io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }

// staleHeaders describe the bytes of the upstream's body, not the problem
// document that replaces it. ETag, Retry-After, Location, Link,
// Cache-Control, Vary and the rest describe the resource or the exchange
// and are kept.
var staleHeaders = [...]string{"Content-Encoding", "Content-Length", "Transfer-Encoding", "Content-Range",
	"Content-Md5", "Digest", "Content-Digest", "Repr-Digest", "Content-Disposition"}

// finish rewrites a buffered upstream response into a problem document.
func (o *observer) finish() {
	hdr := o.ResponseWriter.Header()
	var body []byte
	if o.req.Method != http.MethodHead {
		body = conflict.NormalizeUpstream(conflict.Upstream{
			Status:          o.status,
			ContentType:     hdr.Get("Content-Type"),
			ContentEncoding: hdr.Get("Content-Encoding"),
			Body:            o.buf.Bytes(),
			Truncated:       o.dropped > 0,
			Base:            o.h.ProblemBase,
			Instance:        o.req.URL.Path,
		})
	}
	countUpstreamProblem(o.status)
	if o.buf.Cap() <= 64<<10 {
		bufPool.Put(o.buf)
	}
	o.buf = nil
	for _, name := range staleHeaders {
		delete(hdr, name)
	}
	dropTrailers(hdr)
	hdr.Set("Content-Type", conflict.ContentType)
	if o.req.Method == http.MethodHead {
		// Headers only. The problem a GET would get is made from a body a
		// HEAD never sees, so its length is unknown and not sent (RFC 9110
		// section 8.6 allows that; a wrong one would not be).
		o.ResponseWriter.WriteHeader(o.status)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	o.ResponseWriter.WriteHeader(o.status)
	_, _ = o.ResponseWriter.Write(body)
}

// dropTrailers removes the trailers reverse_proxy announced or copied into
// the header map: a rewritten response is sent with a Content-Length and no
// trailers, and they described the upstream's body.
func dropTrailers(hdr http.Header) {
	for _, v := range hdr["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			delete(hdr, http.CanonicalHeaderKey(strings.TrimSpace(name)))
		}
	}
	delete(hdr, "Trailer")
	for name := range hdr {
		if strings.HasPrefix(name, http.TrailerPrefix) {
			delete(hdr, name)
		}
	}
}

// normalizes reports whether any upstream status is rewritten (normalize
// is not off).
func (h *Handler) normalizes() bool {
	for _, s := range h.Normalize {
		if s != 0 {
			return true
		}
	}
	return false
}

// narrowAcceptEncoding keeps the upstream from answering a request whose
// response may be rewritten in a coding the rewrite cannot read: the
// upstream sees the client's Accept-Encoding (reverse_proxy forwards it,
// and then leaves decoding to the client), and brotli, which browsers ask
// for, has no decoder in this build's dependencies. Only requests other
// than GET and HEAD are narrowed: that is where conflicts come from and
// their response bodies are small, while reads keep the upstream's best
// compression (a normalized GET answered in br still gets a valid problem,
// with the status's standard detail). A client that accepted nothing
// decodable is left to reverse_proxy's transport, which then asks for gzip
// and decodes it itself. encode, outside this handler, chose its own
// coding for the client before this runs.
func (h *Handler) narrowAcceptEncoding(r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead || !h.normalizes() {
		return
	}
	vals := r.Header["Accept-Encoding"]
	if len(vals) == 0 {
		return
	}
	v := vals[0]
	if len(vals) > 1 {
		v = strings.Join(vals, ", ")
	}
	narrowed, changed := conflict.DecodableAcceptEncoding(v)
	switch {
	case !changed:
	case narrowed == "":
		delete(r.Header, "Accept-Encoding")
	default:
		r.Header["Accept-Encoding"] = []string{narrowed}
	}
}

// versionOf reads the version a response header carries, as the upstream
// sent it ("" if none).
func (h *Handler) versionOf(hdr http.Header) string {
	switch h.scheme {
	case conflict.SchemeETag:
		return firstValue(hdr["Etag"])
	case conflict.SchemeLastModified:
		return firstValue(hdr["Last-Modified"])
	case conflict.SchemeHeader:
		return firstValue(hdr[h.Version.Field])
	default:
		// Body versions: the ETag the bodyVersioner made up, if any.
		return firstValue(hdr["Etag"])
	}
}

func firstValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
