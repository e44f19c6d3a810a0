// Command upstream is the fast upstream of the benchmark: a legacy JSON
// document store that ignores preconditions, as the ones caddy-conflict is
// put in front of do, and that costs as little as possible so that the
// proxy's cost shows.
//
//	GET|HEAD /docs/{id}  200, a ~600-byte JSON document, ETag "<id>-<version>"
//	PUT      /docs/{id}  204, the version bumped, the new ETag (If-Match is ignored)
//
// Ids from 1e12 up answer larger documents, for the body-version modes: from
// 1e12 about 1 KiB, from 2e12 about 64 KiB, both a list of items followed, last,
// by "version":"<id>-<version>" (the ETag's text: `version json /version`
// then makes the same ETags as the upstream's, and a scanner must read the
// whole document to find it).
//
// Every id from 0 to 2^64-1 exists at version 1; only written ids take
// memory. The ETag names the id, so a load script can tell which document
// any response (a 409 from the proxy included) is about.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// shards of the version table: PUTs to different ids rarely share a lock.
const shards = 64

type shard struct {
	mu       sync.Mutex
	versions map[uint64]uint64 // written ids only; absent means version 1
	_        [40]byte
}

type store struct{ shards [shards]shard }

func (s *store) shard(id uint64) *shard { return &s.shards[(id*0x9E3779B97F4A7C15)>>58] }

func (s *store) version(id uint64) uint64 {
	sh := s.shard(id)
	sh.mu.Lock()
	v, ok := sh.versions[id]
	sh.mu.Unlock()
	if !ok {
		return 1
	}
	return v
}

func (s *store) bump(id uint64) uint64 {
	sh := s.shard(id)
	sh.mu.Lock()
	v, ok := sh.versions[id]
	if !ok {
		v = 1
	}
	v++
	sh.versions[id] = v
	sh.mu.Unlock()
	return v
}

// filler pads a document to about 600 bytes: above the 512 bytes from which
// Caddy's encode compresses, so encode gzip really works in the gzip configs.
var filler = strings.Repeat("lorem ipsum dolor sit amet ", 21)

var bufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func etag(b []byte, id, v uint64) []byte {
	b = append(b, '"')
	b = strconv.AppendUint(b, id, 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '"')
}

func document(b []byte, id, v uint64) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, v, 10)
	b = append(b, `,"title":"Document `...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `","body":"`...)
	b = append(b, filler...)
	return append(b, "\"}\n"...)
}

// Sized documents: ids from kib1IDs answer about 1 KiB, from kib64IDs about 64 KiB.
const (
	kib1IDs  = 1_000_000_000_000
	kib64IDs = 2_000_000_000_000
)

// items are the middle of the sized documents, built once per size.
var items1, items64 = sizedItems(1 << 10), sizedItems(64 << 10)

func sizedItems(size int) []byte {
	var b []byte
	for i := 0; len(b) < size-80; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":"item","n":12345}`...)
	}
	return b
}

// sized writes a document of about 1 or 64 KiB whose version field comes last.
func sized(w http.ResponseWriter, r *http.Request, bp *[]byte, id, v uint64, items []byte) {
	b := etag((*bp)[:0], id, v)
	tag := len(b)
	b = append(b, `{"id":`...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, `,"items":[`...)
	head := len(b)
	b = append(b, `],"version":`...)
	b = append(b, b[:tag]...) // the ETag's text, quoted: a JSON string
	b = append(b, "}\n"...)
	*bp = b
	h := w.Header()
	h["Etag"] = []string{string(b[:tag])}
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(b) - tag + len(items))}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(b[tag:head])
		_, _ = w.Write(items)
		_, _ = w.Write(b[head:])
	}
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/docs/")
	id, err := strconv.ParseUint(rest, 10, 64)
	if !ok || err != nil {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	h := w.Header()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		v := s.version(id)
		switch {
		case id >= kib64IDs:
			sized(w, r, bp, id, v, items64)
			return
		case id >= kib1IDs:
			sized(w, r, bp, id, v, items1)
			return
		}
		b := etag((*bp)[:0], id, v)
		tag := len(b)
		b = document(b, id, v)
		*bp = b
		h["Etag"] = []string{string(b[:tag])}
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(b) - tag)}
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(b[tag:])
		}
	case http.MethodPut:
		// A legacy API: whatever precondition the client sent, the write is applied.
		_, _ = io.Copy(io.Discard, r.Body)
		v := s.bump(id)
		h["Etag"] = []string{string(etag((*bp)[:0], id, v))}
		w.WriteHeader(http.StatusNoContent)
	default:
		h.Set("Allow", "GET, HEAD, PUT")
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	s := &store{}
	for i := range s.shards {
		s.shards[i].versions = make(map[uint64]uint64)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("upstream: %v", err)
	}
	// The driver reads the address from the first line.
	log.SetFlags(0)
	log.Printf("listening on %s", ln.Addr())
	log.Fatal(http.Serve(ln, s))
}
