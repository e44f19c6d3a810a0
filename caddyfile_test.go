package caddyconflict

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  Handler
	}{
		{"bare", `conflict`, Handler{}},
		{"all", `conflict {
			methods put patch delete post
			key {http.request.host}{http.request.uri}
			version header X-Version
			require precondition
			stale_status 412
			lock_timeout 3s
			ttl 1h
			cache_size 8MiB
			normalize 409 412 428
			problem_base https://example.com/probs/
			max_body 64KiB
			mode report
			preflight
			verify
			store memory
		}`, Handler{
			StoreRaw:    json.RawMessage(`{"type":"memory"}`),
			Methods:     []string{"PUT", "PATCH", "DELETE", "POST"},
			Key:         "{http.request.host}{http.request.uri}",
			Version:     &VersionSource{Source: "header", Field: "X-Version"},
			Require:     "precondition",
			StaleStatus: 412,
			LockTimeout: caddy.Duration(3 * time.Second),
			TTL:         caddy.Duration(time.Hour),
			CacheSize:   8 << 20,
			Normalize:   []int{409, 412, 428},
			ProblemBase: "https://example.com/probs/",
			MaxBody:     64 << 10,
			Mode:        "report",
			Preflight:   true,
			Verify:      true,
		}},
		{"json version", "conflict {\n version json /meta/version \n}", Handler{Version: &VersionSource{Source: "json", Pointer: "/meta/version"}}},
		{"normalize off", "conflict {\n normalize off \n}", Handler{Normalize: []int{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h, tt.want) {
				t.Errorf("got  %+v\nwant %+v", h, tt.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct{ input, names string }{
		{"conflict extra", "wrong argument"},
		{"conflict {\n methods \n}", "methods"},
		{"conflict {\n version md5 \n}", "version"},
		{"conflict {\n version header \n}", "version"},
		{"conflict {\n version json \n}", "version"},
		{"conflict {\n version etag extra \n}", "version"},
		{"conflict {\n require nothing \n}", "require"},
		{"conflict {\n stale_status 400 \n}", "stale_status"},
		{"conflict {\n lock_timeout soon \n}", "lock_timeout"},
		{"conflict {\n ttl -1s \n}", "ttl"},
		{"conflict {\n cache_size lots \n}", "cache_size"},
		{"conflict {\n max_body 0 \n}", "max_body"},
		{"conflict {\n normalize 200 \n}", "normalize"},
		{"conflict {\n mode maybe \n}", "mode"},
		{"conflict {\n preflight yes \n}", "preflight"},
		{"conflict {\n store disk \n}", "store"},
		{"conflict {\n frobnicate \n}", "frobnicate"},
		// A sub-directive given twice is an error naming it, not a silent replacement.
		{"conflict {\n ttl 1m \n ttl 2m \n}", "ttl: given twice"},
		{"conflict {\n methods PUT \n methods POST \n}", "methods: given twice"},
		// The store's own minimum, checked when the Caddyfile is read (it used to pass
		// here and fail only when the store was opened).
		{"conflict {\n cache_size 100KiB \n}", "cache_size: must be at least 1MiB"},
		{"conflict {\n history 8 \n include_current \n merge manual \n}", "merge"},
	}
	for _, tt := range tests {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
		if err == nil || !strings.Contains(err.Error(), tt.names) {
			t.Errorf("%q: error %v should name %q", tt.input, err, tt.names)
		}
	}
}

func TestGuardMayRepeat(t *testing.T) {
	var h Handler
	in := "conflict {\n guard parent \n guard reference /a /a/{value} \n guard reference /b /b/{value} \n}"
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	if len(h.Guards) != 3 {
		t.Fatalf("guards %+v, want 3", h.Guards)
	}
}

func TestValidateNamesSubdirective(t *testing.T) {
	tests := []struct {
		h     Handler
		names string
	}{
		{Handler{Methods: []string{"GET"}}, "methods"},
		{Handler{Methods: []string{"PUT X"}}, "methods"},
		{Handler{Version: &VersionSource{Source: "json", Pointer: "version"}}, "version"},
		{Handler{Version: &VersionSource{Source: "header"}}, "version"},
		{Handler{Version: &VersionSource{Source: "nope"}}, "version"},
		{Handler{Require: "x"}, "require"},
		{Handler{StaleStatus: 418}, "stale_status"},
		{Handler{LockTimeout: -1}, "lock_timeout"},
		{Handler{TTL: -1}, "ttl"},
		{Handler{CacheSize: 10}, "cache_size"},
		{Handler{CacheSize: 100 << 10}, "cache_size"},
		{Handler{MaxBody: -1}, "max_body"},
		{Handler{Normalize: []int{302}}, "normalize"},
		{Handler{ProblemBase: "http://[::1"}, "problem_base"},
		{Handler{Mode: "loud"}, "mode"},
	}
	for _, tt := range tests {
		err := tt.h.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.names) {
			t.Errorf("%+v: error %v should name %q", tt.h, err, tt.names)
		}
	}
	if err := (&Handler{}).Validate(); err != nil {
		t.Errorf("the zero config is valid: %v", err)
	}
}

// TestAdaptRoundTrip: the Caddyfile adapts to JSON, and that JSON decodes
// into the same handler configuration and encodes back unchanged.
func TestAdaptRoundTrip(t *testing.T) {
	input := `:8080 {
	conflict {
		methods PUT PATCH DELETE POST
		version json /version
		require precondition
		stale_status 412
		lock_timeout 2s
		ttl 30m
		cache_size 16MiB
		normalize 409 412
		max_body 256KiB
		mode report
		preflight
		verify
	}
	reverse_proxy 127.0.0.1:8081
}`
	adapter := caddyconfig.GetAdapter("caddyfile")
	out, warnings, err := adapter.Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Logf("warnings: %v", warnings)
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	handlers := collectHandlers(cfg)
	var raw json.RawMessage
	var order []string
	for _, hh := range handlers {
		order = append(order, hh["handler"].(string))
		if hh["handler"] == "conflict" {
			raw, _ = json.Marshal(hh)
		}
	}
	if raw == nil {
		t.Fatalf("no conflict handler in %s", out)
	}
	if len(order) < 2 || order[0] != "conflict" || order[len(order)-1] != "reverse_proxy" {
		t.Errorf("handler order = %v, want conflict before reverse_proxy", order)
	}
	var h Handler
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	if h.Version.Pointer != "/version" || h.StaleStatus != 412 || h.CacheSize != 16<<20 || !h.Verify {
		t.Errorf("decoded %+v", h)
	}
	again, _ := json.Marshal(h)
	var a, b map[string]any
	json.Unmarshal(raw, &a)
	json.Unmarshal(again, &b)
	delete(a, "handler")
	if !reflect.DeepEqual(a, b) {
		t.Errorf("round trip changed the config:\n%s\n%s", raw, again)
	}
}

// TestDirectiveOrder: conflict runs after encode and before handle/route.
func TestDirectiveOrder(t *testing.T) {
	input := `:8080 {
	route {
		respond "x"
	}
	conflict
	encode gzip
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	enc, con, sub := strings.Index(s, `"encode"`), strings.Index(s, `"conflict"`), strings.Index(s, `"subroute"`)
	if !(enc >= 0 && enc < con && con < sub) {
		t.Errorf("order in adapted config: encode@%d conflict@%d subroute@%d\n%s", enc, con, sub, s)
	}
}

// collectHandlers returns the handler objects of an adapted config in order.
func collectHandlers(v any) []map[string]any {
	var out []map[string]any
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["handler"].(string); ok {
			out = append(out, x)
		}
		for _, k := range []string{"apps", "http", "servers", "srv0", "routes", "handle"} {
			if c, ok := x[k]; ok {
				out = append(out, collectHandlers(c)...)
			}
		}
	case []any:
		for _, c := range x {
			out = append(out, collectHandlers(c)...)
		}
	}
	return out
}
