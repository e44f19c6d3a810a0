package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

const adminBase = "http://localhost:2999"

// operateCaddyfile is caddyfile with Caddy's metrics turned on and extra
// global options.
func operateCaddyfile(globals, site string) string {
	return `{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	metrics
	log {
		level ERROR
	}
` + globals + `
}
http://localhost:9080 {
` + site + `
}
`
}

// loadOperate loads (or reloads) a configuration with metrics on.
func loadOperate(t *testing.T, globals, site string) {
	t.Helper()
	caddytest.NewTester(t).InitServer(operateCaddyfile(globals, site), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// scrape reads the caddy_conflict_* series from the admin endpoint's
// /metrics, keyed by name and labels as exposed.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	res, err := http.Get(adminBase + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /metrics: status %d: %s", res.StatusCode, b)
	}
	series := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddy_conflict_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

// expectDeltas checks that each series moved by exactly the given amount
// between two scrapes (counters are process-wide and outlive tests).
func expectDeltas(t *testing.T, before, after map[string]float64, want map[string]float64) {
	t.Helper()
	for name, d := range want {
		if _, ok := after[name]; !ok {
			t.Errorf("%s is not exposed", name)
			continue
		}
		if got := after[name] - before[name]; got != d {
			t.Errorf("%s moved by %v, want %v", name, got, d)
		}
	}
}

func TestMetricsCountDecisionsAndSurviveReload(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	block := "conflict {\n\t\trequire precondition\n\t}"
	loadOperate(t, "", site(block, up))
	purgeVersions(t)

	before := scrape(t)
	for _, name := range []string{
		`caddy_conflict_decisions_total{outcome="forwarded"}`,
		`caddy_conflict_decisions_total{outcome="stale-version"}`,
		`caddy_conflict_rereads_total{reason="verify",result="ok"}`,
		`caddy_conflict_lock_wait_seconds_count`,
		`caddy_conflict_store_entries`, `caddy_conflict_store_bytes`, `caddy_conflict_store_hits_total`,
		`caddy_conflict_store_misses_total`, `caddy_conflict_store_evictions_total`,
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("%s is not exposed before the first request", name)
		}
	}

	// The script: a read, two forwarded writes (one to a key never seen),
	// a stale write, a write without precondition, an upstream 409.
	g := do(t, nil, "GET", "/articles/1", nil)
	expectStatus(t, g, 200, "GET")
	v1 := g.header.Get("ETag")
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"title": "A"}, "If-Match: "+v1), 200, "fresh write")
	expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"title": "B"}, "If-Match: "+v1), 409, "stale-version")
	expectProblem(t, do(t, nil, "PUT", "/articles/2", map[string]any{"title": "C"}), 428, "precondition-required")
	conflictBody := url.QueryEscape(`{"error":"conflict","reason":"Document update conflict."}`)
	expectProblem(t, do(t, nil, "PUT", "/raw/409?ct=application/json&body="+conflictBody, "{}", `If-Match: "x"`),
		409, "upstream-conflict")

	after := scrape(t)
	expectDeltas(t, before, after, map[string]float64{
		`caddy_conflict_decisions_total{outcome="forwarded"}`:             2,
		`caddy_conflict_decisions_total{outcome="stale-version"}`:         1,
		`caddy_conflict_decisions_total{outcome="precondition-required"}`: 1,
		`caddy_conflict_decisions_total{outcome="deleted"}`:               0,
		`caddy_conflict_decisions_total{outcome="reported"}`:              0,
		`caddy_conflict_upstream_problems_total{status="409"}`:            1,
		`caddy_conflict_lock_wait_seconds_count`:                          4,
		`caddy_conflict_rereads_total{reason="preflight",result="ok"}`:    0,
	})
	if after[`caddy_conflict_store_entries`] < 1 {
		t.Errorf("store_entries = %v, want at least the key written", after[`caddy_conflict_store_entries`])
	}
	if after[`caddy_conflict_store_bytes`] <= 0 {
		t.Errorf("store_bytes = %v", after[`caddy_conflict_store_bytes`])
	}
	if after[`caddy_conflict_store_hits_total`] <= before[`caddy_conflict_store_hits_total`] {
		t.Error("store_hits_total did not move although writes found their keys")
	}
	for name := range after {
		if strings.Contains(name, "articles") || strings.Contains(name, "localhost") || strings.Contains(name, `"\"`) {
			t.Errorf("a label carries a key or version: %s", name)
		}
	}

	// A changed configuration (verify on) is a real reload: the collectors
	// are registered into the new registry, keep their counts and count on.
	loadOperate(t, "", site("conflict {\n\t\trequire precondition\n\t\tverify\n\t}", up))
	reloaded := scrape(t)
	expectDeltas(t, after, reloaded, map[string]float64{
		`caddy_conflict_decisions_total{outcome="forwarded"}`:     0,
		`caddy_conflict_decisions_total{outcome="stale-version"}`: 0,
		`caddy_conflict_upstream_problems_total{status="409"}`:    0,
	})
	expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"title": "D"}, "If-Match: "+v1), 409, "stale-version")
	expectStatus(t, do(t, nil, "GET", "/articles/1", nil), 200, "GET after reload")
	expectDeltas(t, reloaded, scrape(t), map[string]float64{
		`caddy_conflict_decisions_total{outcome="stale-version"}`:   1,
		`caddy_conflict_decisions_total{outcome="forwarded"}`:       0,
		`caddy_conflict_rereads_total{reason="verify",result="ok"}`: 1,
		`caddy_conflict_lock_wait_seconds_count`:                    1,
	})
}

// logLines reads the JSON lines of a log file, waiting briefly until at
// least n are there.
func logLines(t *testing.T, path string, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for deadline := time.Now().Add(3 * time.Second); ; {
		lines = lines[:0]
		raw, _ := os.ReadFile(path)
		for _, l := range bytes.Split(raw, []byte("\n")) {
			if len(bytes.TrimSpace(l)) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(l, &m); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, l)
			}
			lines = append(lines, m)
		}
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPlaceholdersInAccessLogAndModuleLogs(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	dir := t.TempDir()
	access := filepath.Join(dir, "access.log")
	modlog := filepath.Join(dir, "conflict.log")
	globals := fmt.Sprintf(`	log conflict {
		output file %s
		format json
		level DEBUG
		include http.handlers.conflict
	}`, modlog)
	siteBlock := fmt.Sprintf(`	log {
		output file %s
		format json
	}
	log_append conflict_outcome {http.conflict.outcome}
	log_append conflict_key {http.conflict.key}
	log_append conflict_version {http.conflict.current_version}
	conflict
	reverse_proxy %s
`, access, up)
	loadOperate(t, globals, siteBlock)
	purgeVersions(t)

	g := do(t, nil, "GET", "/articles/1", nil)
	expectStatus(t, g, 200, "GET")
	v1 := g.header.Get("ETag")
	w := do(t, nil, "PUT", "/articles/1", map[string]any{"title": "A"}, "If-Match: "+v1)
	expectStatus(t, w, 200, "fresh write")
	v2 := w.header.Get("ETag")
	expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"title": "B"}, "If-Match: "+v1), 409, "stale-version")
	do(t, nil, "OPTIONS", "/articles/1", nil) // neither a write nor a read: passed through
	for range 5 {
		do(t, nil, "GET", "/articles/2", nil)
	}

	want := []struct{ method, outcome, version string }{
		{"GET", "read", v1},
		{"PUT", "forwarded", v1},
		{"PUT", "stale-version", v2},
		{"OPTIONS", "pass", ""},
	}
	lines := logLines(t, access, len(want)+5)
	if len(lines) != len(want)+5 {
		t.Fatalf("%d access log lines, want %d", len(lines), len(want)+5)
	}
	for i, wl := range want {
		l := lines[i]
		req, _ := l["request"].(map[string]any)
		if req["method"] != wl.method || l["conflict_outcome"] != wl.outcome ||
			l["conflict_key"] != "localhost:9080/articles/1" || l["conflict_version"] != wl.version {
			t.Errorf("access log line %d: method %v outcome %v key %v version %v; want %s %s localhost:9080/articles/1 %s",
				i, req["method"], l["conflict_outcome"], l["conflict_key"], l["conflict_version"], wl.method, wl.outcome, wl.version)
		}
	}

	// The module's own log: one Info line per rejection naming key,
	// versions and kind; Debug for the forwarded write; nothing for GETs.
	var info, debug []map[string]any
	for _, l := range logLines(t, modlog, 2) {
		switch l["level"] {
		case "info":
			info = append(info, l)
		case "debug":
			debug = append(debug, l)
		}
	}
	if len(info) != 1 {
		t.Fatalf("%d Info lines from the handler, want exactly one (the rejection): %v", len(info), info)
	}
	if l := info[0]; l["kind"] != "stale-version" || l["key"] != "localhost:9080/articles/1" || l["current_version"] != v2 {
		t.Errorf("rejection log line = %v", l)
	} else if c, _ := l["claimed"].([]any); len(c) != 1 || c[0] != v1 {
		t.Errorf("rejection log line claimed = %v, want [%s]", l["claimed"], v1)
	}
	forwarded := 0
	for _, l := range debug {
		if l["msg"] == "write forwarded" {
			forwarded++
		}
	}
	if forwarded != 1 {
		t.Errorf("%d Debug lines for forwarded writes, want 1: %v", forwarded, debug)
	}
}

// admin sends one request to the admin endpoint.
func admin(t *testing.T, method, query string, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, adminBase+"/conflict/versions"+query, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, query, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// adminKey polls for a key's state: a version learned from a read of a new
// key becomes visible asynchronously.
func adminKey(t *testing.T, key string) map[string]any {
	t.Helper()
	q := "?key=" + url.QueryEscape(key)
	for deadline := time.Now().Add(2 * time.Second); ; {
		r := admin(t, "GET", q, "")
		if r.status == http.StatusOK {
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
			return r.json(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: status %d: %s", q, r.status, r.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdminReadListPurge(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	startCaddy(t, site("conflict", up))

	e1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	e2 := do(t, nil, "GET", "/articles/2", nil).header.Get("ETag")
	do(t, nil, "GET", "/categories/1", nil)
	if st := adminKey(t, "localhost:9080/articles/1"); st["key"] != "localhost:9080/articles/1" || st["current_version"] != e1 {
		t.Fatalf("state of articles/1 = %v, want current_version %s", st, e1)
	}
	adminKey(t, "localhost:9080/articles/2")
	adminKey(t, "localhost:9080/categories/1")

	// A write through the proxy supersedes e1; a write based on it is stale.
	w := do(t, nil, "PUT", "/articles/1", map[string]any{"title": "A"}, "If-Match: "+e1)
	expectStatus(t, w, 200, "fresh write")
	st := adminKey(t, "localhost:9080/articles/1")
	if sup, _ := st["superseded"].([]any); st["current_version"] != w.header.Get("ETag") || len(sup) != 1 || sup[0] != e1 {
		t.Fatalf("state after the write = %v, want current %s and superseded [%s]", st, w.header.Get("ETag"), e1)
	}
	expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"title": "B"}, "If-Match: "+e1), 409, "stale-version")

	// List, one key per page.
	var keys []string
	for after, pages := "", 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := admin(t, "GET", "?prefix=localhost:9080/articles/&limit=1&after="+url.QueryEscape(after), "")
		expectStatus(t, r, 200, "list")
		var page struct {
			Items []struct {
				Key            string `json:"key"`
				CurrentVersion string `json:"current_version"`
			} `json:"items"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatalf("list page: %v: %s", err, r.body)
		}
		for _, it := range page.Items {
			keys = append(keys, it.Key)
			if it.Key == "localhost:9080/articles/2" && it.CurrentVersion != e2 {
				t.Errorf("listed articles/2 with version %q, want %s", it.CurrentVersion, e2)
			}
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if strings.Join(keys, " ") != "localhost:9080/articles/1 localhost:9080/articles/2" {
		t.Fatalf("listed keys %v, want articles/1 and articles/2 in order", keys)
	}

	// Purge one key: it is unknown, so the write based on e1 is forwarded.
	r := admin(t, "DELETE", "?key=localhost:9080/articles/1", "")
	expectStatus(t, r, 200, "purge key")
	if got := r.json(t)["purged"]; got != float64(1) {
		t.Fatalf("purged = %v, want 1", got)
	}
	expectProblem(t, admin(t, "GET", "?key=localhost:9080/articles/1", ""), 404, "unknown-key")
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"title": "B"}, "If-Match: "+e1), 200,
		"write with the old version after the purge")

	// Purge a prefix, as a JSON body.
	r = admin(t, "DELETE", "", `{"prefix": "localhost:9080/"}`)
	expectStatus(t, r, 200, "purge prefix")
	if got := r.json(t)["purged"]; got != float64(3) {
		t.Fatalf("purged = %v, want 3 (articles/1 again, articles/2, categories/1): %s", got, r.body)
	}
	r = admin(t, "GET", "?prefix=", "")
	expectStatus(t, r, 200, "list all")
	if !bytes.Contains(r.body, []byte(`"items":[]`)) {
		t.Fatalf("list after purging everything: %s", r.body)
	}

	// Bad requests get problem documents that say what to send.
	for _, c := range []struct {
		method, query, body string
		status              int
		mention             string
	}{
		{"GET", "", "", 400, "key"},
		{"GET", "?key=", "", 400, "key"},
		{"GET", "?key=a&prefix=b", "", 400, "exactly one"},
		{"GET", "?prefix=" + url.QueryEscape("localhost:9080/\x01"), "", 400, "prefix"},
		{"DELETE", "?prefix=" + url.QueryEscape("bad\nprefix"), "", 400, "prefix"},
		{"GET", "?prefix=localhost:9080/&limit=0", "", 400, "limit"},
		{"GET", "?prefix=localhost:9080/&limit=many", "", 400, "limit"},
		{"GET", "?prefix=localhost:9080/&limit=100000", "", 400, "limit"},
		{"DELETE", "", `{"keys": "x"}`, 400, "JSON object"},
		{"POST", "?key=a", "", 405, "DELETE"},
		{"PUT", "?key=a", "", 405, "GET"},
		{"GET", "?key=" + url.QueryEscape("http://localhost/articles/1"), "", 404, "without a scheme"},
	} {
		r := admin(t, c.method, c.query, c.body)
		if r.status != c.status || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %q: status %d, Content-Type %q, want %d problem: %s", c.method, c.query, r.status,
				r.header.Get("Content-Type"), c.status, r.body)
			continue
		}
		p := r.json(t)
		if d, _ := p["detail"].(string); !strings.Contains(d, c.mention) || p["status"] != float64(c.status) || p["title"] == "" {
			t.Errorf("%s %q: problem %s does not mention %q", c.method, c.query, r.body, c.mention)
		}
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: no Allow header", c.method)
		}
	}
}
