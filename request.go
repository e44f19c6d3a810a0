package caddyconflict

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// This file reads what a write's request carries besides its headers: the
// version a JSON body claims, and the body itself up to max_body.

// bodyClaim reads the version a JSON write body claims at the `version json`
// pointer. The body is read up to max_body and given back to the request
// intact. A body that cannot be judged (too large, not JSON, malformed)
// yields no claim and the problem to answer when a claim is required.
func (h *Handler) bodyClaim(r *http.Request) (conflict.Precondition, *conflict.Rejection) {
	var none conflict.Precondition
	if r.Body == nil || r.Body == http.NoBody || !isJSON(r.Header.Get("Content-Type")) {
		return none, nil
	}
	buf, complete, err := readUpTo(r, h.MaxBody)
	if err != nil {
		return none, conflict.InvalidBody("The request body could not be read: " + err.Error())
	}
	if !complete {
		return none, conflict.BodyTooLarge(h.MaxBody)
	}
	text, err := conflict.Lookup(buf, h.pointer)
	switch {
	case err == nil:
		return conflict.Precondition{Kind: conflict.PreconditionVersions, Versions: []string{conflict.ScalarTag(text)},
			Source: "body " + h.Version.Pointer}, nil
	case errors.Is(err, conflict.ErrNoValue):
		return none, nil // no claim: 428 if required
	default:
		return none, conflict.InvalidBody("The request body is not valid JSON: " + err.Error())
	}
}

var errLonger = errors.New("request body longer than its Content-Length")

// readUpTo reads at most limit bytes of r's body and puts them back in front
// of the rest, keeping the original Close. complete is false when the body
// is longer than limit.
func readUpTo(r *http.Request, limit int64) (buf []byte, complete bool, err error) {
	if hb, ok := r.Body.(*heldBody); ok && hb.Len() == len(hb.buf) && int64(len(hb.buf)) <= limit {
		return hb.buf, true, nil // received already, and not read since
	}
	if cl := r.ContentLength; cl >= 0 && cl <= limit {
		// The common case: a declared length within the limit, read in one
		// allocation, one byte more to see the end (net/http's body returns
		// its last bytes with io.EOF: a body within its length is one Read).
		buf = make([]byte, cl+1)
		n := 0
		for err == nil && n <= int(cl) {
			var k int
			k, err = r.Body.Read(buf[n:])
			n += k
		}
		switch {
		case n > int(cl):
			return nil, false, errLonger
		case n == int(cl): // all that was declared, whatever came after it
		case err == io.EOF:
			return nil, false, io.ErrUnexpectedEOF
		default:
			return nil, false, err
		}
		buf = buf[:cl]
		r.Body = newHeldBody(buf, r.Body)
		return buf, true, nil
	}
	var b bytes.Buffer
	n, err := io.CopyN(&b, r.Body, limit+1)
	if err != nil && err != io.EOF {
		return nil, false, err
	}
	buf = b.Bytes()
	complete = n <= limit
	orig := r.Body
	if complete {
		r.Body = newHeldBody(buf, orig)
		r.ContentLength = int64(len(buf))
		r.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	} else {
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), orig), orig}
	}
	return buf, complete, nil
}

// heldBody is a request body received whole; closing it closes the
// client's.
type heldBody struct {
	bytes.Reader
	buf    []byte
	client io.Closer
}

func newHeldBody(buf []byte, client io.Closer) *heldBody {
	hb := &heldBody{buf: buf, client: client}
	hb.Reset(buf)
	return hb
}

func (hb *heldBody) Close() error { return hb.client.Close() }

type readCloser struct {
	io.Reader
	io.Closer
}
