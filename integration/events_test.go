package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// recordedEvents receives the events the test subscriber is given.
var recordedEvents = make(chan caddy.Event, 16)

// eventRecorder is an events handler module, as a site's own plugin that
// reacts to rejections would be.
type eventRecorder struct{}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.conflict_test_recorder", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	select {
	case recordedEvents <- e:
	default:
	}
	return nil
}

// TestRejectionEvent: a rejection is emitted as the Caddy event
// conflict_rejected, with its kind, key and status, to a subscriber
// configured in the events app.
func TestRejectionEvent(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	adapted, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile(site("conflict", up))), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(adapted, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["apps"].(map[string]any)["events"] = map[string]any{"subscriptions": []any{map[string]any{
		"events": []string{"conflict_rejected"}, "handlers": []any{map[string]any{"handler": "conflict_test_recorder"}},
	}}}
	raw, _ := json.Marshal(cfg)
	caddytest.NewTester(t).InitServer(string(raw), "json")
	purgeVersions(t)

	e1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "e"}, "If-Match: "+e1), 200, "write")
	for len(recordedEvents) > 0 {
		<-recordedEvents // none are expected for the write, but start clean
	}
	expectProblem(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1}, "If-Match: "+e1), 409, "stale-version")
	select {
	case e := <-recordedEvents:
		if e.Name() != "conflict_rejected" || e.Data["kind"] != "stale-version" || e.Data["status"] != 409 ||
			e.Data["key"] != "localhost:9080/articles/1" {
			t.Fatalf("event %s %v", e.Name(), e.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no conflict_rejected event reached the subscriber")
	}
}

// TestHandleErrors: with handle_errors, a rejection goes to the site's
// handle_errors routes, which render it their own way from the problem's
// placeholders; the problem's ETag header is kept.
func TestHandleErrors(t *testing.T) {
	up := startLegacy(t, legacyapi.DefaultSeed())
	startCaddy(t, site("conflict {\n\t\thandle_errors\n\t}", up)+`
	handle_errors 409 {
		header Content-Type text/plain
		respond "custom {http.conflict.problem.kind} ({err.status_code}): {http.conflict.problem.current_version}" 409
	}
`)
	e1 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	expectStatus(t, do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "h"}, "If-Match: "+e1), 200, "write")
	r := do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1}, "If-Match: "+e1)
	e2 := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")
	want := "custom stale-version (409): " + e2
	if r.status != 409 || strings.TrimSpace(string(r.body)) != want {
		t.Fatalf("handle_errors rendered %d %q, want 409 %q", r.status, r.body, want)
	}
	if r.header.Get("ETag") != e2 {
		t.Fatalf("ETag %q, want %q", r.header.Get("ETag"), e2)
	}
}
