package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// rmw runs clients×per read-modify-write increments of the integer field of
// the JSON document at path through Caddy, each retried on 409 with a fresh
// GET. With bump, the field named bump is incremented too (a record version
// the client maintains). It returns the number of 409s met.
func rmw(t *testing.T, path, field, bump string, clients, per int) (conflicts int) {
	client := counterClient(false)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range clients {
		wg.Go(func() {
			c := 0
			for done := 0; done < per; {
				g := do(t, client, "GET", path, nil)
				if g.status != 200 {
					t.Errorf("GET %s: %d %s", path, g.status, g.body)
					return
				}
				doc := g.json(t)
				n, _ := doc[field].(float64)
				doc[field] = int(n) + 1
				if bump != "" {
					v, _ := doc[bump].(float64)
					doc[bump] = int(v) + 1
				}
				p := do(t, client, "PUT", path, doc, "If-Match: "+g.header.Get("ETag"))
				switch p.status {
				case 200, 204:
					done++
				case 409:
					c++
				default:
					t.Errorf("PUT %s: %d %s", path, p.status, p.body)
					return
				}
			}
			mu.Lock()
			conflicts += c
			mu.Unlock()
		})
	}
	wg.Wait()
	return conflicts
}

// directGet reads a JSON document from the upstream itself.
func directGet(t *testing.T, url string) map[string]any {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return m
}

func jsonServerSeed() []byte {
	return []byte(`{"articles":[{"id":1,"title":"Hello","views":0,"version":1}],"categories":[{"id":1,"name":"news"}]}`)
}

// TestJSONServer fronts the real json-server 0.17.4, which applies stale
// writes blindly: 16 clients × 25 increments must all survive through the
// handler, and must not all survive without it.
func TestJSONServer(t *testing.T) {
	const clients, per = 16, 25
	configs := []struct {
		name, conflict, bump string
		guarded              bool
	}{
		{"without handler", "", "", false},
		{"version etag", "conflict", "", true},
		// The client keeps the record's version field; the proxy emits it as
		// the ETag and strips it from If-Match before json-server sees it.
		{"version json", "conflict {\n\t\tversion json /version\n\t}", "version", true},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			up := backends.StartJSONServer(t, jsonServerSeed())
			startCaddy(t, fmt.Sprintf("\t%s\n\treverse_proxy %s\n", c.conflict, strings.TrimPrefix(up, "http://")))
			rmw(t, "/articles/1", "views", c.bump, clients, per)
			final := directGet(t, up+"/articles/1")
			views := int(final["views"].(float64))
			if !c.guarded {
				if views >= clients*per {
					t.Fatalf("json-server kept all %d increments without the handler: the test cannot fail", views)
				}
				t.Logf("without the handler %d of %d increments survived", views, clients*per)
				return
			}
			if views != clients*per {
				t.Fatalf("views = %d, want %d: updates were lost", views, clients*per)
			}
			if c.bump != "" && int(final["version"].(float64)) != 1+clients*per {
				t.Errorf("version = %v, want %d", final["version"], 1+clients*per)
			}
		})
	}
}

// TestJSONVersionEmitted: `version json` shows the field as a strong ETag,
// accepts the version in the body as the claim, and never forwards its
// made-up tags.
func TestJSONVersionEmitted(t *testing.T) {
	api := legacyapi.New(map[string][]map[string]any{"items": {{"id": 1, "name": "a", "version": 7}}},
		legacyapi.WithVersionField("version"))
	var seenIfMatch []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenIfMatch = append(seenIfMatch, r.Header.Values("If-Match")...)
		mu.Unlock()
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()
	startCaddy(t, site("conflict {\n\t\tversion json /version\n\t}", strings.TrimPrefix(srv.URL, "http://")))

	g := do(t, nil, "GET", "/items/1", nil)
	if et := g.header.Get("ETag"); et != `"7"` {
		t.Fatalf("ETag = %q, want \"7\"", et)
	}
	// 304 for the made-up tag.
	if r := do(t, nil, "GET", "/items/1", nil, `If-None-Match: "7"`); r.status != 304 {
		t.Errorf("If-None-Match with the current version: %d, want 304", r.status)
	}
	// The claim in the body: the legacy API bumps the version itself.
	expectStatus(t, do(t, nil, "PUT", "/items/1", `{"id":1,"name":"b","version":7}`), 200, "body claim, current")
	// A HEAD has no body to take a version from: it must not erase "8".
	expectStatus(t, do(t, nil, "HEAD", "/items/1", nil), 200, "HEAD")
	p := expectProblem(t, do(t, nil, "PUT", "/items/1", `{"id":1,"name":"c","version":7}`), 409, "stale-version")
	if p["current_version"] != `"8"` {
		t.Errorf("current_version = %v, want \"8\" (learned from the write's response)", p["current_version"])
	}
	expectProblem(t, do(t, nil, "PATCH", "/items/1", `{"name":"d"}`, `If-Match: "7"`), 409, "stale-version")
	expectStatus(t, do(t, nil, "PATCH", "/items/1", `{"name":"e"}`, `If-Match: "8"`), 200, "If-Match, current")
	mu.Lock()
	defer mu.Unlock()
	if len(seenIfMatch) != 0 {
		t.Errorf("made-up tags reached the upstream: %q", seenIfMatch)
	}
}

func TestJSONBadBodies(t *testing.T) {
	for _, require := range []bool{false, true} {
		t.Run(fmt.Sprintf("require=%v", require), func(t *testing.T) {
			api := legacyapi.New(map[string][]map[string]any{"items": {{"id": 1, "version": 1}}}, legacyapi.WithVersionField("version"))
			srv := httptest.NewServer(api)
			defer srv.Close()
			block := "conflict {\n\t\tversion json /version\n\t\tmax_body 1KiB\n"
			if require {
				block += "\t\trequire precondition\n"
			}
			startCaddy(t, site(block+"\t}", strings.TrimPrefix(srv.URL, "http://")))
			do(t, nil, "GET", "/items/1", nil)
			big := `{"id":1,"version":1,"pad":"` + strings.Repeat("x", 2048) + `"}`
			cases := []struct {
				name, body, ct string
				status         int
				kind           string
			}{
				{"malformed JSON", `{"version":`, "application/json", 400, "invalid-body"},
				{"over max_body", big, "application/json", 413, "body-too-large"},
				{"wrong content type", `{"version":1}`, "text/plain", 428, "precondition-required"},
				{"missing field", `{"id":1}`, "application/json", 428, "precondition-required"},
			}
			for _, c := range cases {
				before := api.Writes()
				req, _ := http.NewRequest("PUT", base+"/items/1", strings.NewReader(c.body))
				req.Header.Set("Content-Type", c.ct)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				r := response{status: res.StatusCode, header: res.Header, body: body}
				if require {
					expectProblem(t, r, c.status, c.kind)
					if api.Writes() != before {
						t.Errorf("%s: the write reached the upstream", c.name)
					}
					continue
				}
				// Without require the write is forwarded unchecked; the
				// upstream gets the body intact.
				if api.Writes() != before+1 && r.status < 400 {
					t.Errorf("%s: status %d but upstream writes %d -> %d", c.name, r.status, before, api.Writes())
				}
				if r.status == 409 || r.status == 428 || r.status == 413 {
					t.Errorf("%s: rejected with %d although no claim is required: %s", c.name, r.status, body)
				}
				if c.name == "over max_body" {
					rec, _ := api.Record("items", "1")
					if pad, _ := rec["pad"].(string); len(pad) != 2048 {
						t.Errorf("the large body reached the upstream cut: pad has %d bytes", len(pad))
					}
				}
			}
		})
	}
}

// TestPreflight: a proxy that has never seen the resource asks the upstream
// before deciding, and rejects a stale write.
func TestPreflight(t *testing.T) {
	api := legacyapi.New(map[string][]map[string]any{"items": {{"id": 1, "n": 1}}})
	srv := httptest.NewServer(api)
	defer srv.Close()
	startCaddy(t, site("conflict {\n\t\tpreflight\n\t}", strings.TrimPrefix(srv.URL, "http://")))
	// A client read v1 directly, then someone else changed it directly.
	res, _ := http.Get(srv.URL + "/items/1")
	v1 := res.Header.Get("ETag")
	res.Body.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/items/1", strings.NewReader(`{"id":1,"n":2}`))
	req.Header.Set("Content-Type", "application/json")
	res, _ = http.DefaultClient.Do(req)
	res.Body.Close()
	before := api.Writes()
	expectProblem(t, do(t, nil, "PUT", "/items/1", `{"id":1,"n":3}`, "If-Match: "+v1), 409, "stale-version")
	if api.Writes() != before {
		t.Fatal("the stale write reached the upstream")
	}
}

// TestVerify: something wrote to the upstream behind the proxy's back; a
// client that read the new version directly is not falsely rejected.
func TestVerify(t *testing.T) {
	api := legacyapi.New(map[string][]map[string]any{"items": {{"id": 1, "n": 1}}})
	srv := httptest.NewServer(api)
	defer srv.Close()
	for _, verify := range []bool{false, true} {
		block := "conflict"
		if verify {
			block = "conflict {\n\t\tverify\n\t}"
		}
		startCaddy(t, site(block, strings.TrimPrefix(srv.URL, "http://")))
		do(t, nil, "GET", "/items/1", nil) // the proxy learns the current version
		req, _ := http.NewRequest("PUT", srv.URL+"/items/1", strings.NewReader(`{"id":1,"n":`+strconv.Itoa(int(api.Writes())+10)+`}`))
		res, _ := http.DefaultClient.Do(req)
		v2 := res.Header.Get("ETag")
		res.Body.Close()
		r := do(t, nil, "PUT", "/items/1", `{"id":1,"n":0}`, "If-Match: "+v2)
		if verify {
			expectStatus(t, r, 200, "with verify, the moved version is confirmed and the write passes")
		} else {
			expectProblem(t, r, 409, "stale-version") // without verify: the false rejection verify exists for
		}
	}
}

// TestNginxHash fronts real nginx WebDAV, whose "mtime-size" ETag is the
// same for two writes of equal length within one second.
//
// The collision, step by step: A and C read the file; A writes; B reads
// again within the same second and gets the SAME ETag for the new content,
// so the proxy takes it as current; C's stale write then matches it. With
// `version etag` A's update is lost; with `version hash` C is rejected.
func TestNginxHash(t *testing.T) {
	for _, mode := range []string{"etag", "hash"} {
		t.Run(mode, func(t *testing.T) {
			up, root := backends.StartNginxDAV(t)
			startCaddy(t, site("conflict {\n\t\tversion "+mode+"\n\t}", strings.TrimPrefix(up, "http://")))
			for attempt := 0; ; attempt++ {
				if err := os.WriteFile(filepath.Join(root, "f.txt"), []byte("00000000\n"), 0o666); err != nil {
					t.Fatal(err)
				}
				purgeVersions(t)
				a := do(t, nil, "GET", "/f.txt", nil)
				c := do(t, nil, "GET", "/f.txt", nil)
				expectStatus(t, do(t, nil, "PUT", "/f.txt", "00000001\n", "If-Match: "+a.header.Get("ETag")), 204, "A writes")
				b := do(t, nil, "GET", "/f.txt", nil)
				if string(b.body) != "00000001\n" {
					t.Fatalf("B read %q", b.body)
				}
				sameTag := b.header.Get("ETag") == c.header.Get("ETag")
				r := do(t, nil, "PUT", "/f.txt", "00000001\n", "If-Match: "+c.header.Get("ETag"))
				if mode == "hash" {
					if sameTag {
						t.Fatalf("hash versions of two contents are equal: %s", b.header.Get("ETag"))
					}
					expectProblem(t, r, 409, "stale-version")
					return
				}
				if !sameTag {
					if attempt < 5 {
						continue // a second boundary passed between the writes: try again
					}
					t.Fatalf("nginx's ETags never collided: %s vs %s", b.header.Get("ETag"), c.header.Get("ETag"))
				}
				expectStatus(t, r, 204, "with version etag the stale write passes: A's update is lost")
				t.Logf("nginx gave %s to both contents; the stale write was applied", c.header.Get("ETag"))
				return
			}
		})
	}
}

// TestNginxHashConcurrent: 8 writers × 15 increments of a fixed-width
// counter file on nginx, with `version hash`: none is lost.
func TestNginxHashConcurrent(t *testing.T) {
	const clients, per = 8, 15
	up, root := backends.StartNginxDAV(t)
	if err := os.WriteFile(filepath.Join(root, "counter.txt"), []byte("00000000\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, site("conflict {\n\t\tversion hash\n\t}", strings.TrimPrefix(up, "http://")))
	client := counterClient(false)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for done := 0; done < per; {
				g := do(t, client, "GET", "/counter.txt", nil)
				n, err := strconv.Atoi(strings.TrimSpace(string(g.body)))
				if g.status != 200 || err != nil {
					t.Errorf("GET: %d %q", g.status, g.body)
					return
				}
				p := do(t, client, "PUT", "/counter.txt", fmt.Sprintf("%08d\n", n+1), "If-Match: "+g.header.Get("ETag"))
				switch p.status {
				case 201, 204:
					done++
				case 409:
				default:
					t.Errorf("PUT: %d %s", p.status, p.body)
					return
				}
			}
		})
	}
	wg.Wait()
	raw, _ := os.ReadFile(filepath.Join(root, "counter.txt"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	if n != clients*per {
		t.Fatalf("counter = %d, want %d: updates were lost", n, clients*per)
	}
}
