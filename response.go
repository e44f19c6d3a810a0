package caddyconflict

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// observer watches a response on its way to the client. It reads the
// version when the status arrives (before encode, which wraps us, appends
// its suffix to the ETag) and buffers only responses whose status is in
// `normalize`; everything else streams through untouched.
type observer struct {
	*caddyhttp.ResponseWriterWrapper
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
	ow := &observer{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, req: r}
	err := next.ServeHTTP(ow, r)
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

// finish rewrites a buffered upstream response into a problem document.
func (o *observer) finish() {
	hdr := o.ResponseWriter.Header()
	body := conflict.NormalizeUpstream(conflict.Upstream{
		Status:          o.status,
		ContentType:     hdr.Get("Content-Type"),
		ContentEncoding: hdr.Get("Content-Encoding"),
		Body:            o.buf.Bytes(),
		Truncated:       o.dropped > 0,
		Base:            o.h.ProblemBase,
		Instance:        o.req.URL.Path,
	})
	if o.buf.Cap() <= 64<<10 {
		bufPool.Put(o.buf)
	}
	o.buf = nil
	hdr.Set("Content-Type", conflict.ContentType)
	hdr.Del("Content-Encoding")
	hdr.Del("Transfer-Encoding")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	o.ResponseWriter.WriteHeader(o.status)
	if o.req.Method != http.MethodHead {
		_, _ = o.ResponseWriter.Write(body)
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
	}
	return ""
}

func firstValue(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// reread asks the upstream, through the rest of the handler chain, for the
// current version of r's resource (HEAD, then GET when HEAD tells nothing).
// It returns the state that answer implies, or ok == false when the
// upstream could not say.
func (h *Handler) reread(r *http.Request, next caddyhttp.Handler, s conflict.State) (conflict.State, bool) {
	for _, m := range [...]string{http.MethodHead, http.MethodGet} {
		req := r.Clone(r.Context())
		req.Method = m
		req.Body = http.NoBody
		req.ContentLength = 0
		req.GetBody = nil
		for _, name := range [...]string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
			"If-Range", "If", "Content-Type", "Content-Length", "Content-Encoding", "Expect", "Range"} {
			req.Header.Del(name)
		}
		cw := &capture{header: make(http.Header)}
		err := next.ServeHTTP(cw, req)
		status := cw.status
		if status == 0 {
			if err != nil {
				return s, false
			}
			status = http.StatusOK
		}
		switch {
		case status >= 200 && status < 300:
			v := h.versionOf(cw.header)
			if v == "" && m == http.MethodHead {
				continue
			}
			return s.Observed(v), true
		case status == http.StatusNotFound || status == http.StatusGone:
			return s.Missing(), true
		case status == http.StatusMethodNotAllowed || status == http.StatusNotImplemented:
			continue
		default:
			return s, false
		}
	}
	return s, false
}

// capture is the ResponseWriter of a re-read: it keeps the header and the
// status and discards the body.
type capture struct {
	header http.Header
	status int
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
	return len(p), nil
}

func (c *capture) FlushError() error { return nil }
