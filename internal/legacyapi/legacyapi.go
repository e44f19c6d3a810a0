// Package legacyapi is an in-memory JSON CRUD API in the manner of json-server: it applies every write
// it receives and ignores preconditions (If-Match, If-None-Match: *, If-Unmodified-Since), and it never
// answers 409, 412 or 428 on its own. It is the legacy upstream of the demo and of the tests: whatever
// stale write reaches it is applied, so the proxy in front of it is all that prevents a lost update.
//
// Routes:
//
//	GET|HEAD  /{collection}        list (filter with ?field=value)
//	POST      /{collection}        create: 201, Location /{collection}/{id}, ETag, the new record
//	GET|HEAD  /{collection}/{id}   the record, a strong ETag (or a weak one, WithWeakETags) and Last-Modified
//	PUT       /{collection}/{id}   replace: 200, the new record and ETag
//	PATCH     /{collection}/{id}   shallow merge (application/json or application/merge-patch+json): 200
//	DELETE    /{collection}/{id}   200 {}
//	GET       /events              text/event-stream: "data: 1", flushed, then "data: 2" after 2s or when the client leaves
//	ANY       /raw/{status}        exactly the response described by the query: ct, body, etag, gzip=1, header=Name:value
//
// A missing record or collection is 404 {}. Like Express, GET and HEAD answer 304 when If-None-Match
// matches the current ETag; writes never look at any precondition.
package legacyapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBody bounds a request body; json-server's body parser stops at 10 MB, tests need far less.
const maxBody = 1 << 20

//go:embed seed.json
var seedJSON []byte

// SeedJSON returns the demo data set (articles and categories) as JSON, a copy of the one the
// real json-server backend is started with.
func SeedJSON() []byte { return bytes.Clone(seedJSON) }

// DefaultSeed returns the demo data set decoded, ready for New.
func DefaultSeed() map[string][]map[string]any {
	seed, err := ParseSeed(seedJSON)
	if err != nil {
		panic("legacyapi: embedded seed.json: " + err.Error()) // the embedded file is part of the build
	}
	return seed
}

// ParseSeed decodes a json-server style database: an object of collections, each an array of records.
func ParseSeed(data []byte) (map[string][]map[string]any, error) {
	var seed map[string][]map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&seed); err != nil {
		return nil, fmt.Errorf("legacyapi: seed: %w", err)
	}
	return seed, nil
}

// Option configures an API.
type Option func(*API)

// WithVersionField makes every record carry the integer field name, set to 1 on create and
// incremented on every write. Like the ETag it is informative only: the API never checks it.
func WithVersionField(name string) Option {
	return func(a *API) { a.versionField = name }
}

// WithWeakETags makes the API send json-server's (Express's) weak ETags, W/"<len hex>-<base64 sha1>",
// instead of strong FNV-1a ones.
func WithWeakETags() Option {
	return func(a *API) { a.weakETags = true }
}

// API is the legacy server; it is safe for concurrent use.
type API struct {
	versionField string
	weakETags    bool

	mu          sync.Mutex
	collections map[string]*collection
	writes      int64
}

type collection struct {
	ids     []string // insertion order, as json-server lists them
	records map[string]*record
}

type record struct {
	fields  map[string]any
	modTime time.Time
}

// New returns an API holding a deep copy of seed. Records without an "id" get one.
func New(seed map[string][]map[string]any, opts ...Option) *API {
	a := &API{collections: make(map[string]*collection)}
	for _, opt := range opts {
		opt(a)
	}
	// A JSON round trip is the deep copy, and turns every number into a json.Number like request bodies.
	raw, err := json.Marshal(seed)
	if err != nil {
		panic("legacyapi: seed is not JSON: " + err.Error()) // the seed is code, not input
	}
	copied, err := ParseSeed(raw)
	if err != nil {
		panic(err.Error())
	}
	now := time.Now().UTC().Truncate(time.Second)
	for name, records := range copied {
		c := &collection{records: make(map[string]*record)}
		a.collections[name] = c
		for _, fields := range records {
			id, ok := idString(fields["id"])
			if !ok || c.records[id] != nil {
				id = c.nextID()
				fields["id"] = json.Number(id)
			}
			if a.versionField != "" {
				if _, has := fields[a.versionField]; !has {
					fields[a.versionField] = int64(1)
				}
			}
			c.ids = append(c.ids, id)
			c.records[id] = &record{fields: fields, modTime: now}
		}
	}
	return a
}

// Record returns a copy of a stored record, for tests to check what the upstream really holds.
func (a *API) Record(collectionName, id string) (map[string]any, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.collections[collectionName]
	if c == nil || c.records[id] == nil {
		return nil, false
	}
	return clone(c.records[id].fields), true
}

// Writes returns how many writes (create, replace, merge, delete) the API has applied.
func (a *API) Writes() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writes
}

// ServeHTTP routes a request; see the package documentation.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segments := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(segments) == 1 && segments[0] == "events":
		serveEvents(w, r)
	case len(segments) == 2 && segments[0] == "raw":
		serveRaw(w, r, segments[1])
	case len(segments) == 1 && segments[0] != "":
		a.serveCollection(w, r, segments[0])
	case len(segments) == 2:
		a.serveRecord(w, r, segments[0], segments[1])
	default:
		writeJSON(w, r, http.StatusNotFound, map[string]any{}, "", time.Time{})
	}
}

func (a *API) serveCollection(w http.ResponseWriter, r *http.Request, name string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		methodNotAllowed(w, r, "GET, HEAD, POST")
		return
	}
	var fields map[string]any
	if r.Method == http.MethodPost {
		var err error
		if fields, err = readObject(r); err != nil {
			writeBodyError(w, r, err)
			return
		}
	}

	a.mu.Lock()
	c := a.collections[name]
	if c == nil {
		a.mu.Unlock()
		writeJSON(w, r, http.StatusNotFound, map[string]any{}, "", time.Time{})
		return
	}
	if r.Method != http.MethodPost {
		list, modTime := c.list(r.URL.Query())
		a.mu.Unlock()
		a.writeRepresentation(w, r, http.StatusOK, list, modTime)
		return
	}

	id, given := idString(fields["id"])
	if given && c.records[id] != nil {
		a.mu.Unlock()
		// What json-server 0.17 does with a duplicate id: a 500, never a 409.
		http.Error(w, "Error: Insert failed, duplicate id", http.StatusInternalServerError)
		return
	}
	if !given {
		id = c.nextID()
		fields["id"] = json.Number(id)
	}
	if a.versionField != "" {
		fields[a.versionField] = int64(1)
	}
	rec := &record{fields: fields, modTime: time.Now().UTC()}
	c.ids = append(c.ids, id)
	c.records[id] = rec
	a.writes++
	body := clone(rec.fields)
	a.mu.Unlock()

	w.Header().Set("Location", "/"+name+"/"+id)
	a.writeRepresentation(w, r, http.StatusCreated, body, rec.modTime)
}

func (a *API) serveRecord(w http.ResponseWriter, r *http.Request, name, id string) {
	var patch map[string]any
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodDelete:
	case http.MethodPut, http.MethodPatch:
		var err error
		if patch, err = readObject(r); err != nil {
			writeBodyError(w, r, err)
			return
		}
	default:
		methodNotAllowed(w, r, "GET, HEAD, PUT, PATCH, DELETE")
		return
	}

	a.mu.Lock()
	c := a.collections[name]
	if c == nil || c.records[id] == nil {
		a.mu.Unlock()
		writeJSON(w, r, http.StatusNotFound, map[string]any{}, "", time.Time{})
		return
	}
	rec := c.records[id]
	switch r.Method {
	case http.MethodDelete:
		delete(c.records, id)
		c.ids = slices.DeleteFunc(c.ids, func(s string) bool { return s == id })
		a.writes++
		a.mu.Unlock()
		writeJSON(w, r, http.StatusOK, map[string]any{}, "", time.Time{})
		return
	case http.MethodPut:
		a.apply(rec, patch, false, false)
	case http.MethodPatch:
		a.apply(rec, patch, true, isMergePatch(r))
	}
	body, modTime := clone(rec.fields), rec.modTime
	a.mu.Unlock()
	a.writeRepresentation(w, r, http.StatusOK, body, modTime)
}

// apply writes blindly: a replacement (PUT) or a shallow merge (PATCH; with merge-patch+json a null
// removes the member, RFC 7396). The id never changes, and the version field, if any, counts the
// write whatever the client sent in it.
func (a *API) apply(rec *record, body map[string]any, merge, mergePatch bool) {
	next := body
	if merge {
		next = clone(rec.fields)
		for k, v := range body {
			if v == nil && mergePatch {
				delete(next, k)
				continue
			}
			next[k] = v
		}
	}
	next["id"] = rec.fields["id"]
	if a.versionField != "" {
		next[a.versionField] = versionOf(rec.fields[a.versionField]) + 1
	}
	rec.fields = next
	rec.modTime = time.Now().UTC()
	a.writes++
}

func (c *collection) nextID() string {
	var highest int64
	for _, id := range c.ids {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil && n > highest {
			highest = n
		}
	}
	for n := highest + 1; ; n++ {
		if id := strconv.FormatInt(n, 10); c.records[id] == nil {
			return id
		}
	}
}

// list returns the records matching every ?field=value pair (json-server's filter), and the latest
// modification time among all records.
func (c *collection) list(query map[string][]string) ([]map[string]any, time.Time) {
	list := []map[string]any{}
	var modTime time.Time
	for _, id := range c.ids {
		rec := c.records[id]
		if rec.modTime.After(modTime) {
			modTime = rec.modTime
		}
		if matches(rec.fields, query) {
			list = append(list, clone(rec.fields))
		}
	}
	return list, modTime
}

func matches(fields map[string]any, query map[string][]string) bool {
	for key, values := range query {
		if strings.HasPrefix(key, "_") { // json-server's _sort, _page, _embed...: not filters
			continue
		}
		if !slices.Contains(values, fmt.Sprint(fields[key])) {
			return false
		}
	}
	return true
}

func (a *API) writeRepresentation(w http.ResponseWriter, r *http.Request, status int, v any, modTime time.Time) {
	body := encode(v)
	var etag string
	if a.weakETags {
		etag = WeakETag(body)
	} else {
		etag = StrongETag(body)
	}
	writeBody(w, r, status, "application/json; charset=utf-8", body, etag, modTime)
}

// StrongETag is the API's default validator: a quoted FNV-1a 64 hash of the representation.
func StrongETag(body []byte) string {
	h := fnv.New64a()
	h.Write(body)
	return fmt.Sprintf(`"%016x"`, h.Sum64())
}

// WeakETag is Express's (and so json-server's) validator: W/"<length hex>-<base64 SHA-1, 27 chars>".
func WeakETag(body []byte) string {
	sum := sha1.Sum(body)
	return fmt.Sprintf(`W/"%x-%s"`, len(body), base64.RawStdEncoding.EncodeToString(sum[:]))
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any, etag string, modTime time.Time) {
	writeBody(w, r, status, "application/json; charset=utf-8", encode(v), etag, modTime)
}

func writeBody(w http.ResponseWriter, r *http.Request, status int, contentType string, body []byte, etag string, modTime time.Time) {
	h := w.Header()
	if etag != "" {
		h.Set("ETag", etag)
	}
	if !modTime.IsZero() {
		h.Set("Last-Modified", modTime.UTC().Format(http.TimeFormat))
	}
	// Conditional reads only, as Express does (RFC 9110 §13.1.2, weak comparison); writes ignore preconditions.
	if etag != "" && status == http.StatusOK && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		noneMatch(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// noneMatch reports whether If-None-Match names etag, comparing weakly (RFC 9110 §8.8.3.2).
func noneMatch(headers []string, etag string) bool {
	opaque := strings.TrimPrefix(etag, "W/")
	for _, header := range headers {
		for tag := range strings.SplitSeq(header, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == opaque {
				return true
			}
		}
	}
	return false
}

func encode(v any) []byte {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		body = []byte("{}") // records come from decoded JSON: they always encode
	}
	return body
}

var errContentType = errors.New("legacyapi: request body must be JSON")

// readObject decodes a JSON object body; numbers stay json.Number so ids and large integers survive.
func readObject(r *http.Request) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mediaType, _, err := mime.ParseMediaType(ct)
		if err != nil || !strings.HasSuffix(mediaType, "json") {
			return nil, errContentType
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, fmt.Errorf("legacyapi: request body: %w", err)
	}
	if fields == nil {
		fields = map[string]any{}
	}
	return fields, nil
}

func writeBodyError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadRequest
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, errContentType):
		status = http.StatusUnsupportedMediaType
	case errors.As(err, &tooLarge):
		status = http.StatusRequestEntityTooLarge
	}
	writeJSON(w, r, status, map[string]any{"error": err.Error()}, "", time.Time{})
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, r, http.StatusMethodNotAllowed, map[string]any{}, "", time.Time{})
}

func isMergePatch(r *http.Request) bool {
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mediaType == "application/merge-patch+json"
}

// idString gives the path segment that addresses a record with this id value.
func idString(v any) (string, bool) {
	switch id := v.(type) {
	case json.Number:
		return id.String(), true
	case string:
		return id, id != ""
	case float64:
		return strconv.FormatFloat(id, 'f', -1, 64), true
	case int:
		return strconv.Itoa(id), true
	case int64:
		return strconv.FormatInt(id, 10), true
	}
	return "", false
}

func versionOf(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

func clone(fields map[string]any) map[string]any {
	out := make(map[string]any, len(fields))
	for k, v := range fields {
		out[k] = v // writes replace a record's map, never a value inside it: a shallow copy is enough
	}
	return out
}

// serveEvents proves a streaming response is flushed through the proxy: the first event arrives
// long before the second.
func serveEvents(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "data: 1\n\n")
	_ = http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-time.After(2 * time.Second):
	}
	_, _ = io.WriteString(w, "data: 2\n\n")
	_ = http.NewResponseController(w).Flush()
}

// serveRaw answers exactly what the query asks for, so that tests can make the upstream send any
// status, content type, body, ETag, header or gzip-encoded body:
//
//	/raw/409?ct=application/json&body=%7B%22error%22%3A%22conflict%22%7D&etag=%22v2%22&gzip=1&header=Retry-After:%203
func serveRaw(w http.ResponseWriter, r *http.Request, statusText string) {
	status, err := strconv.Atoi(statusText)
	if err != nil || status < 200 || status > 599 {
		http.Error(w, "legacyapi: /raw/{status} needs a status from 200 to 599", http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(nil, r.Body, maxBody))
	q := r.URL.Query()
	h := w.Header()
	for _, header := range q["header"] {
		name, value, ok := strings.Cut(header, ":")
		if !ok || strings.TrimSpace(name) == "" {
			http.Error(w, "legacyapi: header must be Name:value", http.StatusBadRequest)
			return
		}
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if etag := q.Get("etag"); etag != "" {
		h.Set("ETag", etag)
	}
	body := []byte(q.Get("body"))
	if status == http.StatusNoContent || status == http.StatusNotModified {
		w.WriteHeader(status)
		return
	}
	if ct := q.Get("ct"); ct != "" {
		h.Set("Content-Type", ct)
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	if q.Get("gzip") == "1" {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = buf.Bytes()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
