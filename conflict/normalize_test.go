package conflict

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// Real-world conflict bodies.
const (
	nginx409 = "<html>\r\n<head><title>409 Conflict</title></head>\r\n<body>\r\n<center><h1>409 Conflict</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"

	apache409 = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>409 Conflict</title>\n</head><body>\n<h1>Conflict</h1>\n<p>Cannot PUT to a collection.</p>\n<hr>\n<address>Apache/2.4.62 (Debian) Server at localhost Port 80</address>\n</body></html>\n"

	tomcat409 = `<!doctype html><html lang="en"><head><title>HTTP Status 409 – Conflict</title><style type="text/css">body {font-family:Tahoma,Arial,sans-serif;} h1, h2, h3, b {color:white;background-color:#525D76;} .line {height:1px;background-color:#525D76;border:none;}</style></head><body><h1>HTTP Status 409 – Conflict</h1><hr class="line" /><p><b>Type</b> Status Report</p><p><b>Description</b> The request could not be completed due to a conflict with the current state of the target resource.</p><hr class="line" /><h3>Apache Tomcat/10.1.19</h3></body></html>`

	couchDB409 = `{"error":"conflict","reason":"Document update conflict."}`

	kubernetes409 = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Operation cannot be fulfilled on configmaps \"x\": the object has been modified; please apply your changes to the latest version and try again","reason":"Conflict","details":{"name":"x","kind":"configmaps"},"code":409}`

	elasticsearch409 = `{"error":{"root_cause":[{"type":"version_conflict_engine_exception","reason":"[1]: version conflict, required seqNo [5], primary term [1]. current document has seqNo [6] and primary term [1]","index_uuid":"k3JbQ0fXRkKq1l9aGm0vPw","shard":"0","index":"articles"}],"type":"version_conflict_engine_exception","reason":"[1]: version conflict, required seqNo [5], primary term [1]. current document has seqNo [6] and primary term [1]","index_uuid":"k3JbQ0fXRkKq1l9aGm0vPw","shard":"0","index":"articles"},"status":409}`

	github409 = `{"message":"Reference update failed","documentation_url":"https://docs.github.com/rest/git/refs#update-a-reference","status":"409"}`

	rails422 = `{"errors":{"title":["has already been taken"]}}`

	springBoot3Problem = `{"type":"about:blank","title":"Conflict","status":409,"detail":"Article 42 was modified by another user","instance":"/api/articles/42"}`

	aspNetCoreProblem = `{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.10","title":"Conflict","status":409,"traceId":"00-84a0d8e0b0c64c4f8a1d3b1c2e9a7f10-3c1e9f0a2b4d5e6f-00"}`

	springBoot2Error = `{"timestamp":"2024-05-01T10:00:00.000+00:00","status":409,"error":"Conflict","message":"Article 42 has a newer version","path":"/api/articles/42"}`

	graphQL = `{"errors":[{"message":"Version conflict on Article 42","extensions":{"code":"CONFLICT"}}],"data":null}`

	jsonAPI = `{"errors":[{"status":"409","title":"Conflict","detail":"The article was changed by someone else."}]}`

	s3Conflict = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>OperationAborted</Code><Message>A conflicting conditional operation is currently in progress against this resource. Please try again.</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>u2s/bMcw5a1CGLNPvXcYvNEWu62ZG3hB=</HostId></Error>`
)

// normalize runs NormalizeUpstream and checks what every output must be: a
// valid UTF-8 JSON object with string type, title and detail, and status
// equal to the HTTP status.
func normalize(t testing.TB, u Upstream) map[string]any {
	t.Helper()
	out := NormalizeUpstream(u)
	if !utf8.Valid(out) {
		t.Fatalf("output is not UTF-8: %q", out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil || m == nil {
		t.Fatalf("output is not a JSON object (%v): %s", err, out)
	}
	if st, ok := m["status"].(float64); !ok || int(st) != u.Status {
		t.Fatalf("status = %v, want %d: %s", m["status"], u.Status, out)
	}
	for _, k := range []string{"type", "title", "detail"} {
		if s, ok := m[k].(string); !ok || s == "" {
			t.Fatalf("member %q missing or empty: %s", k, out)
		}
	}
	return m
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func zlibbed(s string) []byte {
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

var zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))

func zstded(s string) []byte { return zstdEncoder.EncodeAll([]byte(s), nil) }

func TestNormalizeUpstream(t *testing.T) {
	const upstreamType = DefaultProblemBase + "upstream-conflict"
	tests := []struct {
		name       string
		u          Upstream
		detail     string
		typ        string // "" = upstreamType
		upstream   string // the embedded "upstream" member, "" = none
		instance   string
		notContain []string
	}{
		{
			name:       "nginx 409 page",
			u:          Upstream{Status: 409, ContentType: "text/html", Body: []byte(nginx409), Instance: "/dav/a.txt"},
			detail:     "409 Conflict",
			instance:   "/dav/a.txt",
			notContain: []string{"nginx", "<"},
		},
		{
			name:       "Apache 409 page",
			u:          Upstream{Status: 409, ContentType: "text/html; charset=iso-8859-1", Body: []byte(apache409)},
			detail:     "Cannot PUT to a collection.",
			notContain: []string{"Apache", "Debian", "Port 80"},
		},
		{
			name:       "Tomcat 409 page",
			u:          Upstream{Status: 409, ContentType: "text/html;charset=utf-8", Body: []byte(tomcat409)},
			detail:     "Type Status Report. Description The request could not be completed due to a conflict with the current state of the target resource.",
			notContain: []string{"Tomcat", "font-family"},
		},
		{
			name:     "CouchDB: a sentence beats a one-word code",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(couchDB409)},
			detail:   "Document update conflict.",
			upstream: couchDB409,
		},
		{
			name:     "Kubernetes Status",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(kubernetes409)},
			detail:   `Operation cannot be fulfilled on configmaps "x": the object has been modified; please apply your changes to the latest version and try again`,
			upstream: kubernetes409,
		},
		{
			name:     "Elasticsearch version_conflict_engine_exception",
			u:        Upstream{Status: 409, ContentType: "application/json; charset=UTF-8", Body: []byte(elasticsearch409)},
			detail:   "[1]: version conflict, required seqNo [5], primary term [1]. current document has seqNo [6] and primary term [1]",
			upstream: elasticsearch409,
		},
		{
			name:     "GitHub API",
			u:        Upstream{Status: 409, ContentType: "application/json; charset=utf-8", Body: []byte(github409)},
			detail:   "Reference update failed",
			upstream: github409,
		},
		{
			name:     "Rails errors object",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(rails422)},
			detail:   "Title has already been taken",
			upstream: rails422,
		},
		{
			name:     "Spring Boot 2 error attributes",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(springBoot2Error)},
			detail:   "Article 42 has a newer version",
			upstream: springBoot2Error,
		},
		{
			name:     "GraphQL errors",
			u:        Upstream{Status: 409, ContentType: "application/graphql-response+json", Body: []byte(graphQL)},
			detail:   "Version conflict on Article 42",
			upstream: graphQL,
		},
		{
			name:     "JSON:API errors",
			u:        Upstream{Status: 409, ContentType: "application/vnd.api+json", Body: []byte(jsonAPI)},
			detail:   "The article was changed by someone else.",
			upstream: jsonAPI,
		},
		{
			name:     "Spring Boot 3 problem detail kept, its instance too",
			u:        Upstream{Status: 409, ContentType: "application/problem+json", Body: []byte(springBoot3Problem), Instance: "/articles/42"},
			detail:   "Article 42 was modified by another user",
			typ:      "about:blank",
			instance: "/api/articles/42",
		},
		{
			name:     "ASP.NET Core problem detail: detail and instance filled in",
			u:        Upstream{Status: 409, ContentType: "application/problem+json; charset=utf-8", Body: []byte(aspNetCoreProblem), Instance: "/articles/42"},
			detail:   "The request conflicts with the current state of the resource.",
			typ:      "https://tools.ietf.org/html/rfc9110#section-15.5.10",
			instance: "/articles/42",
		},
		{
			name:   "problem detail sent as application/json is recognized",
			u:      Upstream{Status: 409, ContentType: "application/json", Body: []byte(springBoot3Problem)},
			detail: "Article 42 was modified by another user",
			typ:    "about:blank",
		},
		{
			name:       "S3 XML error",
			u:          Upstream{Status: 409, ContentType: "application/xml", Body: []byte(s3Conflict)},
			detail:     "A conflicting conditional operation is currently in progress against this resource. Please try again.",
			notContain: []string{"4442587FB7D0A2F9"},
		},
		{
			name:       "HTML error page sent as JSON",
			u:          Upstream{Status: 409, ContentType: "application/json", Body: []byte(nginx409)},
			detail:     "409 Conflict",
			notContain: []string{"nginx", "<"},
		},
		{
			name:   "plain text",
			u:      Upstream{Status: 409, ContentType: "text/plain; charset=utf-8", Body: []byte("Version mismatch:\n  expected 3,\tfound 4\n")},
			detail: "Version mismatch: expected 3, found 4",
		},
		{
			name:   "plain text without a content type",
			u:      Upstream{Status: 409, Body: []byte("Someone else saved this page first.")},
			detail: "Someone else saved this page first.",
		},
		{
			name:     "JSON sent as text/plain",
			u:        Upstream{Status: 409, ContentType: "text/plain", Body: []byte(couchDB409)},
			detail:   "Document update conflict.",
			upstream: couchDB409,
		},
		{
			name:       "HTML without a content type",
			u:          Upstream{Status: 409, Body: []byte(nginx409)},
			detail:     "409 Conflict",
			notContain: []string{"nginx"},
		},
		{
			name:       "HTML: scripts and styles removed, entities decoded",
			u:          Upstream{Status: 409, ContentType: "text/html", Body: []byte(`<html><head><style>p { color: red }</style><script>if (a<b) alert("x")</script></head><body><!-- rev 7 --><p>Tom &amp; Jerry&#39;s page was changed &mdash; <b>reload</b> it.</p></body></html>`)},
			detail:     "Tom & Jerry's page was changed — reload it.",
			notContain: []string{"alert", "color", "rev 7"},
		},
		{
			name:   "empty body, 409",
			u:      Upstream{Status: 409, ContentType: "text/html"},
			detail: "The request conflicts with the current state of the resource.",
		},
		{
			name:   "empty body, 412",
			u:      Upstream{Status: 412, Body: []byte(" \r\n")},
			detail: "A precondition of the request was not met.",
		},
		{
			name:   "empty body, 428",
			u:      Upstream{Status: 428, ContentType: "application/json"},
			detail: "The upstream requires the request to be conditional.",
		},
		{
			name:   "empty body, other status",
			u:      Upstream{Status: 418},
			detail: "The upstream answered 418 I'm a teapot.",
		},
		{
			name:     "gzip-encoded JSON",
			u:        Upstream{Status: 409, ContentType: "application/json", ContentEncoding: "gzip", Body: gzipped(couchDB409)},
			detail:   "Document update conflict.",
			upstream: couchDB409,
		},
		{
			name:     "deflate-encoded JSON",
			u:        Upstream{Status: 409, ContentType: "application/json", ContentEncoding: "deflate", Body: zlibbed(kubernetes409)},
			detail:   `Operation cannot be fulfilled on configmaps "x": the object has been modified; please apply your changes to the latest version and try again`,
			upstream: kubernetes409,
		},
		{
			name:       "zstd-encoded HTML",
			u:          Upstream{Status: 409, ContentType: "text/html", ContentEncoding: "zstd", Body: zstded(apache409)},
			detail:     "Cannot PUT to a collection.",
			notContain: []string{"Apache"},
		},
		{
			name:   "brotli cannot be decoded: generic detail",
			u:      Upstream{Status: 409, ContentType: "application/json", ContentEncoding: "br", Body: []byte{0x1b, 0x38, 0x00, 0xf8}},
			detail: "The request conflicts with the current state of the resource.",
		},
		{
			name:   "corrupt gzip: generic detail",
			u:      Upstream{Status: 409, ContentType: "application/json", ContentEncoding: "gzip", Body: []byte(couchDB409)},
			detail: "The request conflicts with the current state of the resource.",
		},
		{
			name:   "Latin-1 text with its charset",
			u:      Upstream{Status: 409, ContentType: "text/plain; charset=ISO-8859-1", Body: []byte("Konflikt: Die Datei wurde ge\xe4ndert \x93heute\x94.")},
			detail: "Konflikt: Die Datei wurde geändert “heute”.",
		},
		{
			name:   "Latin-1 HTML with its charset",
			u:      Upstream{Status: 409, ContentType: "text/html; charset=latin1", Body: []byte("<p>Le fichier a \xe9t\xe9 modifi\xe9.</p>")},
			detail: "Le fichier a été modifié.",
		},
		{
			name:   "UTF-8 labelled Latin-1 stays UTF-8",
			u:      Upstream{Status: 409, ContentType: "text/plain; charset=iso-8859-1", Body: []byte("Le fichier a été modifié.")},
			detail: "Le fichier a été modifié.",
		},
		{
			name:   "invalid UTF-8 without a charset is replaced",
			u:      Upstream{Status: 409, ContentType: "text/plain", Body: []byte("Datei wurde ge\xe4ndert.")},
			detail: "Datei wurde ge\uFFFDndert.",
		},
		{
			name:   "UTF-16 with a byte order mark",
			u:      Upstream{Status: 409, ContentType: "text/plain", Body: []byte("\xff\xfeC\x00o\x00n\x00f\x00l\x00i\x00c\x00t\x00 \x00!\x00")},
			detail: "Conflict !",
		},
		{
			name:   "binary garbage: generic detail",
			u:      Upstream{Status: 409, ContentType: "application/octet-stream", Body: []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")},
			detail: "The request conflicts with the current state of the resource.",
		},
		{
			name:     "JSON array",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(`[{"code":"conflict","message":"Version conflict on item 7"}]`)},
			detail:   "Version conflict on item 7",
			upstream: `[{"code":"conflict","message":"Version conflict on item 7"}]`,
		},
		{
			name:     "JSON array of strings",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(`["Version conflict","second"]`)},
			detail:   "Version conflict",
			upstream: `["Version conflict","second"]`,
		},
		{
			name:     "JSON string",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte(`"Version conflict"`)},
			detail:   "Version conflict",
			upstream: `"Version conflict"`,
		},
		{
			name:     "JSON number",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte("409\n")},
			detail:   "The request conflicts with the current state of the resource.",
			upstream: "409",
		},
		{
			name:     "pretty-printed JSON is embedded compact",
			u:        Upstream{Status: 409, ContentType: "application/json", Body: []byte("{\n  \"error\": \"conflict\",\n  \"reason\": \"Document update conflict.\"\n}\n")},
			detail:   "Document update conflict.",
			upstream: couchDB409,
		},
		{
			name:       "truncated JSON is not embedded",
			u:          Upstream{Status: 409, ContentType: "application/json", Body: []byte(`{"error":"conflict","reason":"Document upd`)},
			detail:     "conflict",
			notContain: []string{`"upstream"`},
		},
		{
			name:       "body flagged truncated: message before the cut",
			u:          Upstream{Status: 409, ContentType: "application/json", Body: []byte(elasticsearch409[:300]), Truncated: true},
			detail:     "[1]: version conflict, required seqNo [5], primary term [1]. current document has seqNo [6] and primary term [1]",
			notContain: []string{`"upstream"`},
		},
		{
			name:   "invalid JSON without a message reads as text",
			u:      Upstream{Status: 409, ContentType: "application/json", Body: []byte(`{version: 3, oops}`)},
			detail: "{version: 3, oops}",
		},
		{
			name:   "truncated text ends with an detailEllipsis",
			u:      Upstream{Status: 409, ContentType: "text/plain", Body: []byte("The document was changed by ano"), Truncated: true},
			detail: "The document was changed by ano…",
		},
		{
			name:   "custom problem base",
			u:      Upstream{Status: 409, Base: "https://example.com/probs/", Body: []byte("Conflict.")},
			detail: "Conflict.",
			typ:    "https://example.com/probs/upstream-conflict",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := normalize(t, tt.u)
			if got := m["detail"]; got != tt.detail {
				t.Errorf("detail = %q, want %q", got, tt.detail)
			}
			typ := tt.typ
			if typ == "" {
				typ = upstreamType
			}
			if got := m["type"]; got != typ {
				t.Errorf("type = %q, want %q", got, typ)
			}
			if tt.upstream != "" {
				got, _ := json.Marshal(m["upstream"])
				var want any
				json.Unmarshal([]byte(tt.upstream), &want)
				wantJSON, _ := json.Marshal(want)
				if !bytes.Equal(got, wantJSON) {
					t.Errorf("upstream = %s, want %s", got, wantJSON)
				}
			}
			if tt.instance != "" && m["instance"] != tt.instance {
				t.Errorf("instance = %v, want %q", m["instance"], tt.instance)
			}
			out := string(NormalizeUpstream(tt.u))
			for _, s := range tt.notContain {
				if strings.Contains(out, s) {
					t.Errorf("output leaks %q: %s", s, out)
				}
			}
		})
	}
}

func TestNormalizeUpstreamProblemKept(t *testing.T) {
	m := normalize(t, Upstream{Status: 409, ContentType: "application/problem+json", Body: []byte(aspNetCoreProblem), Instance: "/articles/42"})
	if m["title"] != "Conflict" {
		t.Errorf("title = %v, want the upstream's", m["title"])
	}
	if m["traceId"] != "00-84a0d8e0b0c64c4f8a1d3b1c2e9a7f10-3c1e9f0a2b4d5e6f-00" {
		t.Errorf("traceId = %v, want the upstream's extension member kept", m["traceId"])
	}

	// The status member always equals the HTTP status; title filled from it.
	m = normalize(t, Upstream{Status: 412, ContentType: "application/problem+json",
		Body: []byte(`{"status":409,"detail":"Revision 3 is not the latest.","errors":[{"pointer":"/rev"}]}`)})
	if m["title"] != "Precondition Failed" || m["detail"] != "Revision 3 is not the latest." {
		t.Errorf("title, detail = %q, %q", m["title"], m["detail"])
	}
	if m["type"] != DefaultProblemBase+"upstream-conflict" {
		t.Errorf("type = %v, want upstream-conflict for a problem without type", m["type"])
	}
	if _, ok := m["errors"].([]any); !ok {
		t.Errorf("errors = %v, want the upstream's member kept", m["errors"])
	}

	// Standard members of the wrong type are ignored (RFC 9457 section 3.1).
	m = normalize(t, Upstream{Status: 409, ContentType: "application/problem+json",
		Body: []byte(`{"type":42,"title":["x"],"detail":{"a":1},"status":"409","resource":{"id":7}}`)})
	if m["title"] != "Conflict" || m["detail"] != "The request conflicts with the current state of the resource." {
		t.Errorf("title, detail = %q, %q", m["title"], m["detail"])
	}
	if r, ok := m["resource"].(map[string]any); !ok || r["id"] != float64(7) {
		t.Errorf("resource = %v, want the upstream's object kept", m["resource"])
	}

	// Member order: the standard members first.
	out := NormalizeUpstream(Upstream{Status: 409, ContentType: "application/problem+json",
		Body: []byte(`{"traceId":"t","detail":"d","type":"about:blank"}`), Instance: "/a"})
	want := `{"type":"about:blank","title":"Conflict","status":409,"detail":"d","instance":"/a","traceId":"t"}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

func TestNormalizeUpstreamBounds(t *testing.T) {
	long := strings.Repeat("Änderungskonflikt ", 100) // 2-byte runes across the cut
	for _, max := range []int{0, 4, 5, 40, 41, 42, 100} {
		m := normalize(t, Upstream{Status: 409, ContentType: "text/plain", Body: []byte(long), MaxDetail: max})
		d := m["detail"].(string)
		limit := max
		if max == 0 {
			limit = DefaultMaxDetail
		}
		if len(d) > limit || !utf8.ValidString(d) {
			t.Errorf("MaxDetail %d: detail of %d bytes: %q", max, len(d), d)
		}
		if !strings.HasSuffix(d, "…") {
			t.Errorf("MaxDetail %d: cut detail %q has no detailEllipsis", max, d)
		}
	}

	// A long JSON message is bounded too; the embedded body is not.
	msg := strings.Repeat("x y ", 500)
	m := normalize(t, Upstream{Status: 409, ContentType: "application/json", Body: []byte(`{"message":"` + msg + `"}`)})
	if d := m["detail"].(string); len(d) > DefaultMaxDetail {
		t.Errorf("detail of %d bytes", len(d))
	}
	if u := m["upstream"].(map[string]any); u["message"] != msg {
		t.Errorf("upstream message changed")
	}
}

func TestNormalizeUpstreamZipBomb(t *testing.T) {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 64 { // 64 MiB of zeros in about 64 KiB
		w.Write(zeros)
	}
	w.Close()
	u := Upstream{Status: 409, ContentType: "text/plain", ContentEncoding: "gzip", Body: b.Bytes()}

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m := normalize(t, u)
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("decoding allocated %d MiB", alloc>>20)
	}
	if m["detail"] != "The request conflicts with the current state of the resource." {
		t.Errorf("detail = %q", m["detail"])
	}

	// A long text that inflates past the bound still gives its start.
	b.Reset()
	w = gzip.NewWriter(&b)
	for range 1 << 16 {
		w.Write([]byte("conflict conflict conflict conflict "))
	}
	w.Close()
	m = normalize(t, Upstream{Status: 409, ContentType: "text/plain", ContentEncoding: "gzip", Body: b.Bytes()})
	if d := m["detail"].(string); !strings.HasPrefix(d, "conflict conflict") || !strings.HasSuffix(d, "…") {
		t.Errorf("detail = %q", d)
	}
}

func TestNormalizeUpstreamStatusOnlyHeadings(t *testing.T) {
	tests := []struct {
		text   string
		status int
		want   bool
	}{
		{"409 Conflict", 409, true},
		{"Conflict", 409, true},
		{"Error 409", 409, true},
		{"HTTP Status 409 – Conflict", 409, true},
		{"412 Precondition Failed", 412, true},
		{"Edit conflict", 409, false},
		{"Cannot PUT to a collection.", 409, false},
	}
	for _, tt := range tests {
		if got := statusOnly(tt.text, tt.status); got != tt.want {
			t.Errorf("statusOnly(%q, %d) = %v, want %v", tt.text, tt.status, got, tt.want)
		}
	}
}

// FuzzNormalizeUpstream: whatever the upstream sends, the output is one
// valid JSON object whose status is the HTTP status.
func FuzzNormalizeUpstream(f *testing.F) {
	for _, s := range []struct {
		body, ct string
	}{
		{nginx409, "text/html"},
		{apache409, "text/html; charset=iso-8859-1"},
		{tomcat409, "text/html"},
		{couchDB409, "application/json"},
		{kubernetes409, "application/json"},
		{elasticsearch409, "application/json"},
		{github409, "application/json"},
		{rails422, "application/json"},
		{springBoot3Problem, "application/problem+json"},
		{aspNetCoreProblem, "application/problem+json"},
		{s3Conflict, "application/xml"},
		{"Version mismatch", "text/plain"},
		{"", ""},
		{`{"error":"conflict","reason":"Document upd`, "application/json"},
		{"Datei ge\xe4ndert", "text/plain; charset=iso-8859-1"},
		{"\xff\xfeC\x00", "text/plain; charset=utf-16"},
	} {
		for enc := range uint8(3) {
			f.Add([]byte(s.body), s.ct, enc, false, uint16(409))
		}
	}
	f.Add([]byte(elasticsearch409[:200]), "application/json", uint8(0), true, uint16(409))
	f.Add([]byte(nginx409), "text/html", uint8(4), false, uint16(412))

	f.Fuzz(func(t *testing.T, body []byte, ct string, enc uint8, truncated bool, status uint16) {
		u := Upstream{Status: int(status), ContentType: ct, Body: body, Truncated: truncated,
			MaxDetail: 64, Instance: "/r"}
		switch enc % 6 {
		case 1:
			u.ContentEncoding, u.Body = "gzip", gzipped(string(body))
		case 2:
			u.ContentEncoding, u.Body = "deflate", zlibbed(string(body))
		case 3:
			u.ContentEncoding, u.Body = "zstd", zstded(string(body))
		case 4:
			u.ContentEncoding = "gzip" // raw bytes labelled gzip
		case 5:
			u.ContentEncoding = "zstd, gzip"
		}
		m := normalize(t, u)
		if mt, _ := mediaType(ct); mt == "text/html" {
			if d := m["detail"].(string); len(d) > u.MaxDetail {
				t.Errorf("detail of %d bytes > MaxDetail %d", len(d), u.MaxDetail)
			}
		}
	})
}

// A typical 1 KiB JSON conflict body.
var conflict1KiB = []byte(`{"error":{"root_cause":[{"type":"version_conflict_engine_exception","reason":"[article-42]: version conflict, required seqNo [1205], primary term [3]. current document has seqNo [1207] and primary term [3]","index_uuid":"k3JbQ0fXRkKq1l9aGm0vPw","shard":"2","index":"articles-2024.05"}],"type":"version_conflict_engine_exception","reason":"[article-42]: version conflict, required seqNo [1205], primary term [3]. current document has seqNo [1207] and primary term [3]","index_uuid":"k3JbQ0fXRkKq1l9aGm0vPw","shard":"2","index":"articles-2024.05"},"status":409,"request":{"id":"0c2b7a6e-93c4-4f1e-8d55-2f6f1b0c9a11","method":"PUT","path":"/articles-2024.05/_doc/article-42","params":{"if_seq_no":"1205","if_primary_term":"3","refresh":"wait_for"}},"hints":["Re-read the document and retry the update with the current seq_no and primary_term.","Use retry_on_conflict for partial updates."],"node":"es-data-2","took_ms":3,"timestamp":"2024-05-01T10:00:00.000Z","trace":"00-84a0d8e0b0c64c4f8a1d3b1c2e9a7f10-3c1e9f0a2b4d5e6f-01"}`)

func BenchmarkNormalizeJSON1KiB(b *testing.B) {
	u := Upstream{Status: 409, ContentType: "application/json; charset=UTF-8", Body: conflict1KiB, Instance: "/articles/42"}
	b.ReportAllocs()
	b.SetBytes(int64(len(conflict1KiB)))
	for b.Loop() {
		NormalizeUpstream(u)
	}
}

func TestFindMessage(t *testing.T) {
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	tests := []struct{ body, want string }{
		{`{"Message":"Caf\u00e9 \"7\" changed"}`, `Café "7" changed`},                                          // ASP.NET Web API, AWS: capitalized
		{`{"code":"E_CONFLICT","error":{"code":"conflict"}}`, "conflict"},                                      // codes only: the first found
		{`{"error":"invalid_request","error_description":"The grant was revoked."}`, "The grant was revoked."}, // OAuth
		{`{"errors":["Title is taken","Slug is taken"]}`, "Title is taken; Slug is taken"},
		{`{"errors":{"base":["Record is locked"],"user_name":"is invalid"}}`, "Record is locked; User name is invalid"},
		{`{"data":` + deep + `,"message":"Deep but fine"}`, "Deep but fine"},
		{deep, ""},
		{`{"message": "Version conflict" garbage`, "Version conflict"},
		{`{"detail":{"message":"nested, ignored"},"msg":"Short msg"}`, "Short msg"},
		{`{"message":"\ud83d\ude00 ok"}`, "😀 ok"},
		{`{"message":"bad \x escape"}`, ""},
		{`{"a":[1,2,{"b":"c"}],"reason":"Already exists."}`, "Already exists."},
		{`{"message":`, ""},
		{`}{][`, ""},
	}
	for _, tt := range tests {
		if got := findMessage([]byte(tt.body)).pick(DefaultMaxDetail); got != tt.want {
			t.Errorf("findMessage(%.60q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestNormalizeUpstreamLongHTML(t *testing.T) {
	for _, body := range []string{
		"<p>" + strings.Repeat("é", 1<<19) + "</p>",
		strings.Repeat("<b>é</b> ", 1<<16),
		"<p>" + strings.Repeat("x", 2048) + "é" + strings.Repeat("y", 1<<20),
	} {
		m := normalize(t, Upstream{Status: 409, ContentType: "text/html", Body: []byte(body), MaxDetail: 128})
		if d := m["detail"].(string); len(d) > 128 || !strings.HasSuffix(d, "…") {
			t.Errorf("detail of %d bytes: %q", len(d), d)
		}
	}
}

func TestDecodableAcceptEncoding(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		changed  bool
	}{
		{"", "", false},
		{"gzip", "gzip", false},
		{"gzip, deflate", "gzip, deflate", false},
		{"zstd;q=1.0, gzip;q=0.5, identity", "zstd;q=1.0, gzip;q=0.5, identity", false},
		{"GZip", "GZip", false},
		{"gzip, deflate, br, zstd", "gzip, deflate, zstd", true}, // what browsers send
		{"br", "", true},
		{"br;q=1.0, gzip;q=0.8, *;q=0.1", "gzip;q=0.8", true},
		{"*", "", true}, // "*" lets the upstream pick br
		{"compress, x-gzip", "x-gzip", true},
		{" , gzip,,", " , gzip,,", false},
	} {
		got, changed := DecodableAcceptEncoding(tc.in)
		if got != tc.want || changed != tc.changed {
			t.Errorf("DecodableAcceptEncoding(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
		}
		if !changed {
			continue
		}
		// Every coding kept must be one the rewrite can read.
		for item := range strings.SplitSeq(got, ",") {
			coding, _, _ := strings.Cut(item, ";")
			if coding = strings.TrimSpace(coding); coding != "" && !decodable(coding) {
				t.Errorf("DecodableAcceptEncoding(%q) kept %q", tc.in, coding)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { DecodableAcceptEncoding("gzip, deflate, zstd") }); n != 0 {
		t.Errorf("an unchanged header allocates %v times", n)
	}
}

func FuzzDecodableAcceptEncoding(f *testing.F) {
	for _, s := range []string{"", "gzip, deflate, br, zstd", "br;q=1, *;q=0.1", " , gzip,,", "identity;q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, changed := DecodableAcceptEncoding(v)
		if !changed && got != v {
			t.Fatalf("unchanged but %q became %q", v, got)
		}
		for item := range strings.SplitSeq(got, ",") {
			coding, _, _ := strings.Cut(item, ";")
			if coding = strings.TrimSpace(coding); coding != "" && !decodable(coding) {
				t.Fatalf("%q kept %q", v, coding)
			}
		}
	})
}
