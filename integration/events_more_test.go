package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// loadWithEvents adapts a Caddyfile (operateCaddyfile's globals and site)
// and subscribes the test recorder to events.
func loadWithEvents(t *testing.T, globals, site string, events ...string) {
	t.Helper()
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(operateCaddyfile(globals, site)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["apps"].(map[string]any)["events"] = map[string]any{"subscriptions": []any{map[string]any{
		"events": events, "handlers": []any{map[string]any{"handler": "conflict_test_recorder"}},
	}}}
	raw, _ := json.Marshal(cfg)
	caddytest.NewTester(t).InitServer(string(raw), "json")
	for len(recordedEvents) > 0 {
		<-recordedEvents
	}
}

func nextEvent(t *testing.T, name string) map[string]any {
	t.Helper()
	for {
		select {
		case e := <-recordedEvents:
			if e.Name() == name {
				return e.Data
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event reached the subscriber", name)
		}
	}
}

// TestStoreErrorEventAndInfoLogs: a write the Redis store cannot check is
// emitted as conflict_store_error (key, action); the rejection's Info log
// line does not carry the key (keys may name users) unless log_keys is set.
func TestStoreErrorEventAndInfoLogs(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there: Redis is down
	for _, logKeys := range []bool{false, true} {
		modlog := filepath.Join(t.TempDir(), "conflict.log")
		globals := fmt.Sprintf("\tlog conflict {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel INFO\n\t\tinclude http.handlers.conflict\n\t}", modlog)
		opts := ""
		if logKeys {
			opts = "\t\tlog_keys\n"
		}
		block := "conflict {\n" + opts + "\t\tstore redis {\n\t\t\taddress " + dead + "\n\t\t\ttimeout 200ms\n\t\t}\n\t}"
		loadWithEvents(t, globals, site(block, up), "conflict_store_error", "conflict_rejected")

		expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1}, `If-Match: "x"`), 503, "store-unavailable")
		d := nextEvent(t, "conflict_store_error")
		if d["key"] != "localhost:9080/articles/1" || d["action"] != "rejected" || d["error"] == "" {
			t.Fatalf("conflict_store_error event: %v", d)
		}
		if d := nextEvent(t, "conflict_rejected"); d["kind"] != "store-unavailable" || d["status"] != 503 {
			t.Fatalf("conflict_rejected event: %v", d)
		}
		var info []map[string]any
		deadline := time.Now().Add(5 * time.Second)
		for len(info) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			info = infoLines(t, modlog)
		}
		if len(info) != 1 {
			t.Fatalf("log_keys %v: %d Info lines, want the rejection's: %v", logKeys, len(info), info)
		}
		if _, has := info[0]["key"]; has != logKeys {
			t.Errorf("log_keys %v: the Info line carries the key: %v (%v)", logKeys, has, info[0])
		}
		if info[0]["kind"] != "store-unavailable" {
			t.Errorf("Info line: %v", info[0])
		}
	}
}

func infoLines(t *testing.T, path string) []map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil && l["level"] == "info" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestMergeEvent: a rebased write (merge auto) is emitted as
// conflict_merged, with the key and the two versions.
func TestMergeEvent(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	loadWithEvents(t, "", site("conflict {\n\t\thistory 8 1MiB\n\t\tmerge auto\n\t}", up), "conflict_merged")
	purgeVersions(t)
	g := do(t, nil, "GET", "/articles/1", nil)
	e1 := g.header.Get("ETag")
	var doc map[string]any
	if err := json.Unmarshal(g.body, &doc); err != nil {
		t.Fatal(err)
	}
	a := map[string]any{}
	for k, v := range doc {
		a[k] = v
	}
	a["title"] = "changed by A"
	expectStatus(t, do(t, nil, "PUT", "/articles/1", a, "If-Match: "+e1), 200, "A's write")
	b := map[string]any{}
	for k, v := range doc {
		b[k] = v
	}
	b["views"] = 99 // another field, from the same (now stale) version
	r := do(t, nil, "PUT", "/articles/1", b, "If-Match: "+e1)
	expectStatus(t, r, 200, "B's disjoint write, rebased")
	if r.header.Get("Conflict-Merged") == "" {
		t.Fatalf("no Conflict-Merged header: %v", r.header)
	}
	d := nextEvent(t, "conflict_merged")
	if d["key"] != "localhost:9080/articles/1" || !strings.Contains(fmt.Sprint(d["claimed"]), strings.Trim(e1, `W/"`)) {
		t.Fatalf("conflict_merged event: %v", d)
	}
}
