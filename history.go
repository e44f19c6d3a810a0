package caddyconflict

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// This file records the representations the merge help works from (README
// "Helping the client merge"): JSON bodies copied as upstream responses
// stream to the client, kept in the history under their version.

// recordInto returns the writer to forward r's response through: with
// history on, a tee that copies a JSON response body (up to max_body) as it
// streams to the client, and, for a JSON write, a copy of the request body
// the upstream reads. Otherwise w itself: the read path costs nothing when
// history is off.
func (h *Handler) recordInto(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	write := h.methods[r.Method] && (r.Method == http.MethodPut || r.Method == http.MethodPatch)
	if h.history == nil || (r.Method != http.MethodGet && !write) ||
		(r.URL.RawQuery != "" && !h.keyHasQuery) {
		return w
	}
	t := &representationTee{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, h: h, write: write}
	if write {
		if r.Body == nil || r.Body == http.NoBody || !isJSON(r.Header.Get("Content-Type")) ||
			r.Header.Get("Content-Encoding") != "" {
			return w
		}
		t.request = &requestTee{ReadCloser: r.Body, limit: h.MaxBody}
		r.Body = t.request
	}
	return t
}

// representationTee copies a 200 (or, to a write, 201) JSON response body
// up to max_body while it streams on; it never holds the response.
type representationTee struct {
	caddyhttp.ResponseWriterWrapper
	h        *Handler
	write    bool
	status   int
	encoding string
	buf      *bytes.Buffer // nil: not copying (any more)
	request  *requestTee
}

func (t *representationTee) WriteHeader(status int) {
	if status >= 200 && t.status == 0 {
		t.status = status
		hdr := t.ResponseWriter.Header()
		enc := hdr.Get("Content-Encoding")
		if (status == http.StatusOK || (t.write && status == http.StatusCreated)) &&
			isJSON(hdr.Get("Content-Type")) && (enc == "" || enc == "identity" || enc == "gzip") {
			t.encoding = enc
			t.buf = bufPool.Get().(*bytes.Buffer)
			t.buf.Reset()
		}
	}
	t.ResponseWriter.WriteHeader(status)
}

func (t *representationTee) Write(p []byte) (int, error) {
	if t.status == 0 {
		t.WriteHeader(http.StatusOK)
	}
	if t.buf != nil {
		if int64(t.buf.Len()+len(p)) > t.h.MaxBody {
			t.release() // too large to keep: stream on
		} else {
			t.buf.Write(p)
		}
	}
	return t.ResponseWriter.Write(p)
}

func (t *representationTee) ReadFrom(r io.Reader) (int64, error) {
	if t.status == 0 {
		t.WriteHeader(http.StatusOK)
	}
	if t.buf != nil {
		return io.Copy(writerOnly{t}, r)
	}
	return t.ResponseWriterWrapper.ReadFrom(r)
}

func (t *representationTee) FlushError() error {
	return http.NewResponseController(t.ResponseWriter).Flush()
}

// body returns the copied representation, decoded, or nil.
func (t *representationTee) body() []byte {
	if t.buf == nil {
		return nil
	}
	if t.encoding != "gzip" {
		return t.buf.Bytes()
	}
	zr, err := gzip.NewReader(bytes.NewReader(t.buf.Bytes()))
	if err != nil {
		return nil
	}
	out, err := io.ReadAll(io.LimitReader(zr, t.h.MaxBody+1))
	if err != nil || int64(len(out)) > t.h.MaxBody {
		return nil
	}
	return out
}

func (t *representationTee) release() {
	if t.buf != nil && t.buf.Cap() <= 64<<10 {
		bufPool.Put(t.buf)
	}
	t.buf = nil
}

// requestTee copies a write's body (up to max_body) as the upstream reads
// it.
type requestTee struct {
	io.ReadCloser
	buf      bytes.Buffer
	limit    int64
	overflow bool
}

func (t *requestTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 && !t.overflow {
		if int64(t.buf.Len()+n) > t.limit {
			t.overflow = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	return n, err
}

// teeOf finds the tee recordInto put under an observer.
func teeOf(ow *observer) *representationTee {
	t, _ := ow.ResponseWriter.(*representationTee)
	return t
}

// remember records the representation a GET returned under its version.
func (h *Handler) remember(key string, ow *observer) {
	t := teeOf(ow)
	if t == nil {
		return
	}
	defer t.release()
	if ow.status != http.StatusOK || ow.version == "" {
		return
	}
	if body := t.body(); body != nil {
		h.representations().Add(key, ow.version, body) // shared: queued, never a round trip here
	}
}

// rememberWrite records the representation a PUT or PATCH response carries
// under the new version. Only a response that echoes the write is taken
// as the representation: a status body such as {"ok":true} is not one. It
// runs before the write claim is released, so the next write to the key
// finds it.
func (h *Handler) rememberWrite(key string, r *http.Request, ow *observer) {
	t := teeOf(ow)
	if t == nil {
		return
	}
	defer t.release()
	if ow.status < 200 || ow.status >= 300 || ow.version == "" || t.request == nil || t.request.overflow {
		return
	}
	body := t.body()
	if body != nil && conflict.Echoes(body, t.request.buf.Bytes(), h.versionPointer()) {
		h.representations().AddNow(r.Context(), key, ow.version, body) // shared: stored before the claim is released
	}
}
