package caddyconflict

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// chunks is a body that gives its pieces one Read each, then err.
type chunks struct {
	pieces []string
	err    error
	reads  int
}

func (c *chunks) Read(p []byte) (int, error) {
	c.reads++
	if len(c.pieces) == 0 {
		return 0, c.err
	}
	n := copy(p, c.pieces[0])
	if c.pieces[0] = c.pieces[0][n:]; c.pieces[0] == "" {
		c.pieces = c.pieces[1:]
	}
	return n, nil
}

func (c *chunks) Close() error { return nil }

// TestReadUpTo: a body with a declared length is held whole when it has
// exactly that length, and refused when it is shorter or longer; held, it
// reads again from its start.
func TestReadUpTo(t *testing.T) {
	broken := errors.New("connection reset")
	for _, c := range []struct {
		name   string
		length int64
		body   *chunks
		want   string
		err    error
	}{
		{"exact", 5, &chunks{pieces: []string{"he", "llo"}, err: io.EOF}, "hello", nil},
		{"exact, then an error", 5, &chunks{pieces: []string{"hello"}, err: broken}, "hello", nil},
		{"shorter", 5, &chunks{pieces: []string{"hel"}, err: io.EOF}, "", io.ErrUnexpectedEOF},
		{"cut off", 5, &chunks{pieces: []string{"hel"}, err: broken}, "", broken},
		{"longer", 5, &chunks{pieces: []string{"hello!"}, err: io.EOF}, "", errLonger},
		{"empty", 0, &chunks{err: io.EOF}, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/a", nil)
			r.Body, r.ContentLength = c.body, c.length
			buf, complete, err := readUpTo(r, 1<<20)
			if c.err != nil {
				if err == nil || err.Error() != c.err.Error() {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || !complete || string(buf) != c.want {
				t.Fatalf("readUpTo = %q, %v, %v; want %q", buf, complete, err, c.want)
			}
			again, err := io.ReadAll(r.Body)
			if err != nil || string(again) != c.want {
				t.Fatalf("the held body reads %q, %v", again, err)
			}
		})
	}
}

// TestReadUpToOneRead: a body that reports its end with its last bytes,
// as net/http's does, is read in one call.
func TestReadUpToOneRead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		counted := &countingBody{ReadCloser: r.Body}
		r.Body = counted
		buf, complete, err := readUpTo(r, 1<<20)
		if err != nil || !complete || len(buf) != 600 || counted.reads != 1 {
			t.Errorf("readUpTo: %d bytes, complete %v, %v, in %d reads", len(buf), complete, err, counted.reads)
		}
	}))
	defer srv.Close()
	res, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("x", 600)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

type countingBody struct {
	io.ReadCloser
	reads int
}

func (c *countingBody) Read(p []byte) (int, error) {
	c.reads++
	return c.ReadCloser.Read(p)
}
