package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-conflict/caddy-conflict/internal/backends"
)

// With `store redis` and `history`, the representations are shared through
// Redis: the merge help works whichever node a stale write lands on.

// historyHash finds the Redis hash holding the shared history's bodies.
func historyHash(t *testing.T, c *redis.Client) string {
	t.Helper()
	keys, err := c.Keys(context.Background(), "*\x00history").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("history hashes in Redis: %q, want one", keys)
	}
	return keys[0]
}

// TestRedisHistoryTwoNodes: two Caddy nodes share Redis in front of a real
// json-server. A client reads through node a, another writes through node
// a; the first client's stale write through node b gets a 409 with
// changes and changed_paths (and, as its edit overlaps, conflicting_paths);
// a disjoint stale edit landing on node b is rebased (Conflict-Merged). A
// DELETE through node a drops the key's shared history.
func TestRedisHistoryTwoNodes(t *testing.T) {
	rds := backends.StartRedis(t)
	up := strings.TrimPrefix(backends.StartJSONServer(t, articleDB()), "http://")
	s := redisSite("\t\thistory 8 1MiB\n\t\tinclude_current\n\t\tmerge auto", "\t\t\taddress "+rds.Addr(), up)
	a, b := startNode(t, s), startNode(t, s)
	client := counterClient(false)

	g := do(t, client, http.MethodGet, a.url+"/articles/1", nil, lbHost)
	expectStatus(t, g, 200, "read through node a")
	v1 := g.header.Get("ETag")
	w := do(t, client, http.MethodPut, a.url+"/articles/1",
		`{"id":1,"title":"Hello, world","body":"First draft","tags":["news"]}`, "If-Match: "+v1, lbHost)
	expectStatus(t, w, 200, "write through node a")
	v2 := w.header.Get("ETag")

	// The stale write through node b: node b never saw either
	// representation; Redis has both (v1 queued by node a's read, v2 stored
	// by its write before the claim was released).
	var p map[string]any
	attempts := 0
	for deadline := time.Now().Add(3 * time.Second); ; {
		attempts++
		r := do(t, client, http.MethodPut, b.url+"/articles/1",
			`{"id":1,"title":"Goodbye","body":"First draft","tags":["news"]}`, "If-Match: "+v1, lbHost)
		p = expectProblem(t, r, http.StatusConflict, "stale-version")
		if p["changes"] != nil || time.Now().After(deadline) {
			t.Logf("409 through node b (attempt %d): %s", attempts, r.body)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	changes, _ := p["changes"].(map[string]any)
	if changes["title"] != "Hello, world" || len(changes) != 1 {
		t.Fatalf("changes = %v, want the title node a's writer set", p["changes"])
	}
	if !reflect.DeepEqual(p["changed_paths"], []any{"/title"}) {
		t.Errorf("changed_paths = %v", p["changed_paths"])
	}
	if !reflect.DeepEqual(p["conflicting_paths"], []any{"/title"}) {
		t.Errorf("conflicting_paths = %v", p["conflicting_paths"])
	}
	if cur, _ := p["current"].(map[string]any); cur["title"] != "Hello, world" {
		t.Errorf("current = %v", p["current"])
	}
	if attempts != 1 {
		t.Logf("changes appeared on attempt %d (node a's queued add was late)", attempts)
	}

	// Node b is reloaded with a larger history (a new near-cache, the same
	// table in Redis); a disjoint stale edit (the body, from v1) through it
	// is rebased onto v2.
	reloadNode(t, b, func(conf string) string {
		return strings.Replace(conf, "history 8 1MiB", "history 16 2MiB", 1)
	})
	client.CloseIdleConnections() // the old config's server closed them
	m := do(t, client, http.MethodPut, b.url+"/articles/1",
		`{"id":1,"title":"Hello","body":"Second draft","tags":["news"]}`, "If-Match: "+v1, lbHost)
	expectStatus(t, m, 200, "disjoint stale edit through node b")
	if got, want := m.header.Get("Conflict-Merged"), v1+" -> "+v2; got != want {
		t.Errorf("Conflict-Merged = %q, want %q", got, want)
	}
	final := directGet(t, "http://"+up+"/articles/1")
	if final["title"] != "Hello, world" || final["body"] != "Second draft" {
		t.Fatalf("json-server holds %v: an edit was lost", final)
	}
	v3 := m.header.Get("ETag")

	// A disjoint edit from v2 (stale now) through node a: node a finds v3,
	// which node b's rebased write stored, in Redis.
	r := do(t, client, http.MethodPut, a.url+"/articles/1",
		`{"id":1,"title":"Hello, world","body":"First draft","tags":["news","merged"]}`, "If-Match: "+v2, lbHost)
	expectStatus(t, r, 200, "disjoint stale edit through node a")
	if got, want := r.header.Get("Conflict-Merged"), v2+" -> "+v3; got != want {
		t.Errorf("Conflict-Merged = %q, want %q", got, want)
	}
	final = directGet(t, "http://"+up+"/articles/1")
	if final["title"] != "Hello, world" || final["body"] != "Second draft" || len(final["tags"].([]any)) != 2 {
		t.Fatalf("json-server holds %v: an edit was lost", final)
	}

	// A DELETE through node a drops the key's shared history.
	c := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer c.Close()
	hash := historyHash(t, c)
	if n := c.HLen(context.Background(), hash).Val(); n == 0 {
		t.Fatal("no representation in Redis before the DELETE")
	}
	expectStatus(t, do(t, client, http.MethodDelete, a.url+"/articles/1", nil, lbHost), 200, "DELETE through node a")
	if n := c.HLen(context.Background(), hash).Val(); n != 0 {
		t.Errorf("%d representations left in Redis after the DELETE", n)
	}
}

// reloadNode loads node n's Caddyfile, changed by edit, through its admin
// API (a config reload: the new config is provisioned before the old one
// is cleaned up).
func reloadNode(t *testing.T, n *node, edit func(string) string) {
	t.Helper()
	path := n.cmd.Args[len(n.cmd.Args)-3] // run --config PATH --adapter caddyfile
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	conf := edit(string(raw))
	if conf == string(raw) {
		t.Fatal("reloadNode: the edit changed nothing")
	}
	admin := regexp.MustCompile(`admin (\S+)`).FindStringSubmatch(conf)
	if admin == nil {
		t.Fatalf("no admin address in %s", conf)
	}
	res, err := http.Post(fmt.Sprintf("http://%s/load", admin[1]), "text/caddyfile", strings.NewReader(conf))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("reload: %s", res.Status)
	}
}
