// Package integration runs caddy-conflict inside real Caddy (caddytest, fixed
// ports 2999/9080/9443) in front of real upstream servers. Every test that
// starts Caddy lives in this one package so that the fixed ports are never
// used twice at once.
package integration

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddy-conflict/caddy-conflict"
	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

const base = "http://localhost:9080"

func TestMain(m *testing.M) {
	// caddytest autosaves its config under the XDG directories; keep them
	// out of the developer's home.
	dir, err := os.MkdirTemp("", "caddy-conflict-it-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	os.Setenv("XDG_DATA_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// caddyfile wraps site directives into a full Caddyfile for caddytest.
func caddyfile(site string) string {
	return `{
	skip_install_trust
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	log {
		level ERROR
	}
}
http://localhost:9080 {
` + site + `
}
`
}

// startCaddy loads site into the shared in-process Caddy.
func startCaddy(t *testing.T, site string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t)
	tester.InitServer(caddyfile(site), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	purgeVersions(t)
	return tester
}

// reloadCaddy loads a changed configuration, keeping the version table.
func reloadCaddy(t *testing.T, site string) {
	t.Helper()
	caddytest.NewTester(t).InitServer(caddyfile(site), "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// purgeVersions empties the version table, which survives config reloads
// and so would otherwise carry one test's versions into the next.
func purgeVersions(t *testing.T) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://localhost:2999/conflict/versions?prefix=", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("purge: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("purge: status %d", res.StatusCode)
	}
}

// startLegacy starts the demo legacy API (it ignores preconditions) with the
// given collections and returns its host:port.
func startLegacy(t *testing.T, seed map[string][]map[string]any) string {
	t.Helper()
	srv := httptest.NewServer(legacyapi.New(seed))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends one request to Caddy; headers are "Name: value" strings. path is
// relative to base unless it is a whole http:// URL (another Caddy node).
func do(t testing.TB, client *http.Client, method, path string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	url := path
	if !strings.HasPrefix(path, "http://") {
		url = base + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		if strings.EqualFold(strings.TrimSpace(name), "Host") {
			req.Host = strings.TrimSpace(value) // as a load balancer passes it on
			continue
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var rd2 io.Reader = res.Body
	if res.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatalf("%s %s: gzip: %v", method, path, err)
		}
		rd2 = zr
	}
	raw, err := io.ReadAll(rd2)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

func expectStatus(t testing.TB, r response, want int, what string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: status %d, want %d; body: %s", what, r.status, want, r.body)
	}
}

// expectProblem checks that r is an RFC 9457 problem document of kind.
func expectProblem(t testing.TB, r response, status int, kind string) map[string]any {
	t.Helper()
	expectStatus(t, r, status, "problem "+kind)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	p := r.json(t)
	if got, _ := p["type"].(string); got[strings.LastIndexAny(got, "#/")+1:] != kind { // problem_base + kind
		t.Fatalf("type = %q, want <problem_base>%s; %s", got, kind, r.body)
	}
	if got, _ := p["status"].(float64); int(got) != status {
		t.Fatalf("status member = %v, want %d", p["status"], status)
	}
	for _, m := range []string{"title", "detail"} {
		if s, _ := p[m].(string); s == "" {
			t.Fatalf("member %q missing: %s", m, r.body)
		}
	}
	return p
}

func site(conflictBlock, upstream string) string {
	return fmt.Sprintf("\t%s\n\treverse_proxy %s\n", conflictBlock, upstream)
}
