package conflict

import (
	"bytes"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestProblemKinds(t *testing.T) {
	tests := []struct {
		kind   Kind
		status int
		title  string
	}{
		{KindStaleVersion, 409, "Stale version"},
		{KindDeleted, 409, "Resource deleted"},
		{KindAlreadyExists, 412, "Resource already exists"},
		{KindPreconditionRequired, 428, "Precondition required"},
		{KindWriteInProgress, 409, "Write in progress"},
		{KindInvalidPrecondition, 400, "Invalid precondition"},
		{KindUpstreamConflict, 409, "Upstream conflict"},
		{KindParentMissing, 409, "Parent missing"},
		{KindNotEmpty, 409, "Resource not empty"},
		{KindReferenceMissing, 409, "Referenced resource missing"},
		{KindUpstreamUnavailable, 502, "Upstream unavailable"},
		{KindStoreUnavailable, 503, "Version store unavailable"},
		{KindBodyTooLarge, 413, "Request body too large"},
		{KindInvalidBody, 400, "Invalid request body"},
		{Kind("made-up-kind"), 409, "Made up kind"},
	}
	for _, tt := range tests {
		if got := tt.kind.Title(); got != tt.title {
			t.Errorf("%s: Title() = %q, want %q", tt.kind, got, tt.title)
		}
		p := NewProblem("", tt.kind, 0, "")
		var m map[string]any
		if err := json.Unmarshal(p.JSON(), &m); err != nil {
			t.Fatalf("%s: %v", tt.kind, err)
		}
		if m["type"] != DefaultProblemBase+string(tt.kind) || m["title"] != tt.title ||
			m["status"] != float64(tt.status) {
			t.Errorf("%s: got %v", tt.kind, m)
		}
		if d, _ := m["detail"].(string); d == "" {
			t.Errorf("%s: no default detail", tt.kind)
		}
	}
}

func TestProblemJSON(t *testing.T) {
	p := NewProblem("https://example.com/probs/", KindStaleVersion, 412, "The article changed since you read it.")
	p.Instance = "/articles/42"
	p.Resource = "example.com/articles/42"
	p.CurrentVersion = `"v8"`
	p.ProvidedVersions = []string{`"v7"`, `W/"v6"`}
	if err := p.Set("changes", map[string]any{"title": "New"}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetRaw("changed_paths", []byte(` [ "/title" ] `)); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"https://example.com/probs/stale-version","title":"Stale version","status":412,` +
		`"detail":"The article changed since you read it.","instance":"/articles/42",` +
		`"resource":"example.com/articles/42","current_version":"\"v8\"",` +
		`"provided_versions":["\"v7\"","W/\"v6\""],"changes":{"title":"New"},"changed_paths":["/title"]}`
	if got := string(p.JSON()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got, _ := json.Marshal(p); string(got) != want {
		t.Errorf("json.Marshal differs from JSON: %s", got)
	}

	// Setting a member again replaces it in place.
	p.Set("changes", nil)
	if got := string(p.JSON()); !strings.HasSuffix(got, `"changes":null,"changed_paths":["/title"]}`) {
		t.Errorf("after replacing changes: %s", got)
	}

	if err := p.Set("status", 500); err == nil {
		t.Error("Set of a standard member: no error")
	}
	if err := p.SetRaw("upstream", []byte(`{"a":`)); err == nil {
		t.Error("SetRaw of invalid JSON: no error")
	}
	if _, ok := p.Member("upstream"); ok {
		t.Error("invalid member was kept")
	}
}

func TestProblemJSONEmpty(t *testing.T) {
	got := string((&Problem{Status: 409}).JSON())
	want := `{"type":"about:blank","title":"Conflict","status":409}`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestProblemJSONEscaping(t *testing.T) {
	for _, s := range []string{
		`quote " backslash \ slash /`,
		"tab\tnewline\nreturn\rbell\x07nul\x00del\x7f",
		"<script>&amp;</script>",
		"caf\u00e9 \u2028 \u2029 \U0001F600",
		"invalid \xff\xfe utf-8 \xe2\x82",
	} {
		p := NewProblem("", KindInvalidBody, 0, s)
		p.Resource = s
		p.Related = []string{s}
		out := p.JSON()
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("%q: invalid output %q", s, out)
		}
		var back Problem
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want := string([]rune(s)) // each invalid byte becomes U+FFFD
		if back.Detail != want || back.Resource != want || back.Related[0] != want {
			t.Errorf("%q came back as %q", s, back.Detail)
		}
		if bytes.Contains(out, []byte("\u2028")) {
			t.Errorf("U+2028 not escaped: %s", out)
		}
	}
}

func TestProblemUnmarshalJSON(t *testing.T) {
	in := `{"type":"about:blank","traceId":"x","status":"409","title":7,"resource":{"id":1},` +
		`"related":["/a"],"errors":{"a":["b"]},"traceId":"y"}`
	var p Problem
	if err := json.Unmarshal([]byte(in), &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != "about:blank" || p.Status != 0 || p.Title != "" || p.Related[0] != "/a" {
		t.Errorf("got %+v", p)
	}
	// The duplicate traceId keeps its first position and takes the last value.
	want := `{"type":"about:blank","title":"","status":0,"related":["/a"],"traceId":"y","resource":{"id":1},"errors":{"a":["b"]}}`
	if got := string(p.JSON()); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{`[1]`, `{"a":1} {}`, `{"a":`, `"x"`} {
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// FuzzProblemJSON: any field values render as valid JSON that reads back
// to the same values.
func FuzzProblemJSON(f *testing.F) {
	f.Add("stale-version", `The article changed.`, `"v8"`, "/a", `{"x":[1,2]}`)
	f.Add("", "\x00\xff\u2028", "", "", `"\ud800"`)
	f.Fuzz(func(t *testing.T, kind, detail, version, resource, extra string) {
		p := NewProblem("", Kind(kind), 0, detail)
		p.CurrentVersion = version
		p.Resource = resource
		p.ProvidedVersions = []string{version, detail}
		_ = p.SetRaw("extra", []byte(extra))
		out := p.JSON()
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("invalid output %q", out)
		}
		var back Problem
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if back.Detail != string([]rune(p.Detail)) ||
			back.CurrentVersion != string([]rune(version)) ||
			back.Status != p.Status {
			t.Errorf("round trip: %+v -> %s", p, out)
		}
	})
}

func BenchmarkProblemJSON(b *testing.B) {
	p := NewProblem("", KindStaleVersion, 409, "The resource has changed since the version this request is based on.")
	p.Instance = "/articles/42"
	p.Resource = "example.com/articles/42"
	p.CurrentVersion = `"33a64df551425fcc55e4d42a148795d9f25f89d4"`
	p.ProvidedVersions = []string{`"2c26b46b68ffc68ff99b453c1d30413413422d70"`}
	b.ReportAllocs()
	for b.Loop() {
		p.JSON()
	}
}

// TestProblemTypesDocumented: every kind's type URI under the default
// problem base leads to a section of docs/problems.md (RFC 9457 section
// 3.1.1: a type URI should lead to documentation of the problem), and each
// section states the kind's status.
func TestProblemTypesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/problems.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(DefaultProblemBase, "/docs/problems.md#") {
		t.Fatalf("DefaultProblemBase %q does not lead to docs/problems.md", DefaultProblemBase)
	}
	sections := map[string]string{}
	for _, part := range strings.Split("\n"+string(doc), "\n## ")[1:] {
		title, body, _ := strings.Cut(part, "\n")
		sections[strings.TrimSpace(title)] = body
	}
	for k, info := range kinds {
		body, ok := sections[string(k)]
		if !ok {
			t.Errorf("docs/problems.md has no section %q: %s%s leads nowhere", k, DefaultProblemBase, k)
			continue
		}
		if k != KindUpstreamConflict && !strings.Contains(body, strconv.Itoa(info.status)) {
			t.Errorf("docs/problems.md, section %s: its status %d is not stated", k, info.status)
		}
	}
}
