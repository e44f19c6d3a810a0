package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// expectRelated checks a guard's problem document and the keys it names.
func expectRelated(t *testing.T, r response, kind string, related ...string) {
	t.Helper()
	p := expectProblem(t, r, http.StatusConflict, kind)
	var got []string
	list, _ := p["related"].([]any)
	for _, v := range list {
		s, _ := v.(string)
		got = append(got, s)
	}
	if !reflect.DeepEqual(got, related) {
		t.Fatalf("related = %q, want %q: %s", got, related, r.body)
	}
}

// direct sends one request to an upstream, past Caddy.
func direct(t *testing.T, method, url, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestGuardParentNginx: real nginx WebDAV answers a PUT into a folder that
// does not exist with a 500. With `guard parent`, once the proxy saw the
// folder deleted, the client gets a 409 parent-missing naming the folder.
func TestGuardParentNginx(t *testing.T) {
	up, root := backends.StartNginxDAV(t)
	if s := direct(t, "PUT", up+"/never/made.txt", "x"); s != 500 {
		t.Fatalf("nginx answered a PUT into a missing folder with %d; this test expects its 500", s)
	}
	startCaddy(t, site("conflict {\n\t\tguard parent\n\t}", strings.TrimPrefix(up, "http://")))

	// A folder made through Caddy, then deleted through Caddy.
	expectStatus(t, do(t, nil, "MKCOL", "/folder/", nil), 201, "MKCOL")
	expectStatus(t, do(t, nil, "PUT", "/folder/a.txt", "a"), 201, "PUT into the folder")
	expectStatus(t, do(t, nil, "DELETE", "/folder/", nil), 204, "DELETE the folder")
	expectRelated(t, do(t, nil, "PUT", "/folder/b.txt", "b"), "parent-missing", "localhost:9080/folder")
	if _, err := os.Stat(filepath.Join(root, "folder")); !os.IsNotExist(err) {
		t.Fatalf("the folder exists on disk: %v", err)
	}
	// Made again: writes into it pass.
	expectStatus(t, do(t, nil, "MKCOL", "/folder/", nil), 201, "MKCOL again")
	expectStatus(t, do(t, nil, "PUT", "/folder/b.txt", "b"), 201, "PUT into the folder made again")

	// A folder created on disk, read and deleted through Caddy.
	if err := os.MkdirAll(filepath.Join(root, "disk"), 0o755); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, do(t, nil, "GET", "/disk/", nil), 200, "listing")
	expectStatus(t, do(t, nil, "DELETE", "/disk/", nil), 204, "DELETE")
	expectRelated(t, do(t, nil, "PUT", "/disk/c.txt", "c"), "parent-missing", "localhost:9080/disk")
	if _, err := os.Stat(filepath.Join(root, "disk")); !os.IsNotExist(err) {
		t.Fatal("the rejected PUT re-created the folder")
	}
}

// TestGuardChildrenNginx: nginx deletes a folder with everything in it.
// With `guard children`, a DELETE of a folder holding a file the proxy
// knows gets 409 not-empty naming it; once the file is deleted, the folder
// may go.
func TestGuardChildrenNginx(t *testing.T) {
	up, root := backends.StartNginxDAV(t)
	startCaddy(t, site("conflict {\n\t\tguard children\n\t}", strings.TrimPrefix(up, "http://")))
	expectStatus(t, do(t, nil, "MKCOL", "/bucket/", nil), 201, "MKCOL")
	expectStatus(t, do(t, nil, "PUT", "/bucket/a.txt", "a"), 201, "PUT a file")
	if err := os.WriteFile(filepath.Join(root, "bucket", "seen.txt"), []byte("s"), 0o644); err != nil {
		t.Fatal(err)
	}
	expectStatus(t, do(t, nil, "GET", "/bucket/seen.txt", nil), 200, "GET a file made on disk")

	expectRelated(t, do(t, nil, "DELETE", "/bucket/", nil), "not-empty", "localhost:9080/bucket/a.txt", "localhost:9080/bucket/seen.txt")
	if _, err := os.Stat(filepath.Join(root, "bucket", "a.txt")); err != nil {
		t.Fatalf("the file is gone: %v", err)
	}
	expectStatus(t, do(t, nil, "DELETE", "/bucket/a.txt", nil), 204, "DELETE a file")
	expectRelated(t, do(t, nil, "DELETE", "/bucket/", nil), "not-empty", "localhost:9080/bucket/seen.txt")
	expectStatus(t, do(t, nil, "DELETE", "/bucket/seen.txt", nil), 204, "DELETE the other file")
	expectStatus(t, do(t, nil, "DELETE", "/bucket/", nil), 204, "DELETE the empty folder")
	if _, err := os.Stat(filepath.Join(root, "bucket")); !os.IsNotExist(err) {
		t.Fatalf("the folder still exists: %v", err)
	}
}

func guardSeed() []byte {
	return []byte(`{"articles":[{"id":1,"title":"Hello","categoryId":1}],` +
		`"categories":[{"id":1,"name":"news"},{"id":2,"name":"sports"},{"id":3,"name":"weather"}]}`)
}

// TestGuardReferenceJSONServer: json-server stores an article whose
// category is gone. With `guard reference`, once the proxy saw the category
// deleted, such writes get 409 reference-missing; with `preflight`, also for
// a category deleted directly on json-server.
func TestGuardReferenceJSONServer(t *testing.T) {
	const guard = "\t\tmethods PUT PATCH DELETE POST\n\t\tguard reference /categoryId /categories/{value}\n"
	t.Run("seen", func(t *testing.T) {
		up := backends.StartJSONServer(t, guardSeed())
		if s := direct(t, "DELETE", up+"/categories/3", ""); s != 200 {
			t.Fatalf("DELETE on json-server: %d", s)
		}
		if s := direct(t, "POST", up+"/articles", `{"title":"dangling","categoryId":3}`); s != 201 {
			t.Fatalf("json-server refused a dangling article (%d); this test expects it to store it", s)
		}
		startCaddy(t, site("conflict {\n"+guard+"\t}", strings.TrimPrefix(up, "http://")))

		expectStatus(t, do(t, nil, "DELETE", "/categories/2", nil), 200, "DELETE the category")
		before := len(directList(t, up+"/articles"))
		expectRelated(t, do(t, nil, "POST", "/articles", map[string]any{"title": "t", "categoryId": 2}),
			"reference-missing", "localhost:9080/categories/2")
		expectRelated(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "Hello", "categoryId": 2}),
			"reference-missing", "localhost:9080/categories/2")
		if n := len(directList(t, up+"/articles")); n != before {
			t.Fatalf("json-server holds %d articles, had %d", n, before)
		}
		if a := directGet(t, up+"/articles/1"); a["categoryId"] != float64(1) {
			t.Fatalf("the rejected PUT reached json-server: %v", a)
		}
		// Existing or unknown categories: forwarded (the proxy never saw 3
		// deleted, and asks no one without preflight).
		expectStatus(t, do(t, nil, "POST", "/articles", map[string]any{"title": "ok", "categoryId": 1}), 201, "existing category")
		expectStatus(t, do(t, nil, "POST", "/articles", map[string]any{"title": "unseen", "categoryId": 3}), 201, "unknown category")
	})
	t.Run("preflight", func(t *testing.T) {
		up := backends.StartJSONServer(t, guardSeed())
		startCaddy(t, site("conflict {\n"+guard+"\t\tpreflight\n\t}", strings.TrimPrefix(up, "http://")))
		// Deleted behind the proxy's back: the proxy asks json-server.
		if s := direct(t, "DELETE", up+"/categories/3", ""); s != 200 {
			t.Fatalf("DELETE on json-server: %d", s)
		}
		expectRelated(t, do(t, nil, "POST", "/articles", map[string]any{"title": "t", "categoryId": 3}),
			"reference-missing", "localhost:9080/categories/3")
		expectRelated(t, do(t, nil, "PATCH", "/articles/1", map[string]any{"categoryId": "3"}),
			"reference-missing", "localhost:9080/categories/3")
		expectStatus(t, do(t, nil, "POST", "/articles", map[string]any{"title": "ok", "categoryId": 2}), 201, "existing category")
		if a := directGet(t, up+"/articles/1"); a["categoryId"] != float64(1) {
			t.Fatalf("the rejected PATCH reached json-server: %v", a)
		}
	})
}

// directList reads a JSON array from the upstream itself.
func directList(t *testing.T, url string) []any {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var list []any
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return list
}
