package conflict

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMarkupDetail: markup is read as an HTML5 tokenizer reads it, and as
// a browser would show it.
func TestMarkupDetail(t *testing.T) {
	tests := []struct {
		name, body string
		xml        bool
		want       string
	}{
		{"self-closing svg hides nothing after it", `<svg viewBox="0 0 1 1"/><p>Edit conflict: reload the page.</p>`, false, "Edit conflict: reload the page."},
		{"svg content and its title are hidden", `<svg><title>icon</title><text>x</text></svg><p>Shown.</p>`, false, "Shown."},
		{"nested hidden elements", `<object><object>inner</object>still hidden</object><p>Shown.</p>`, false, "Shown."},
		{"select/ stays open", `<select/><option>A</option></select><p>Pick again.</p>`, false, "Pick again."},
		{"empty comment", `<p>First.</p><!--><p>Second.</p>`, false, "First. Second."},
		{"title only, no text", `<html><head><title>Edit &amp; conflict</title></head><body></body></html>`, false, "Edit & conflict"},
		{"a title cut off by the end", `<title>Edit conflict`, false, "Edit conflict"},
		{"literal less-than", `<p>a < b, 3<4</p>`, false, "a < b, 3<4"},
		{"XML CDATA is literal", `<Error><Message><![CDATA[x &amp; <y> changed.]]></Message></Error>`, true, "x &amp; <y> changed."},
		{"XML has no raw-text elements", `<Error><Script><Message>Inside a script element.</Message></Script></Error>`, true, "Inside a script element."},
		{"XML entities", `<?xml version="1.0"?><Error><Code>C</Code><Message>a &lt; b &#38; c.</Message></Error>`, true, "a < b & c."},
	}
	for _, tt := range tests {
		if got := markupDetail([]byte(tt.body), tt.xml, 409, false, DefaultMaxDetail); got != tt.want {
			t.Errorf("%s: markupDetail(%q) = %q, want %q", tt.name, tt.body, got, tt.want)
		}
	}
}

func BenchmarkNormalizeHTML(b *testing.B) {
	big := "<!doctype html><html><head><title>Edit conflict</title><style>" + strings.Repeat("p{color:red} ", 200) +
		"</style><script>" + strings.Repeat("if (a<b) x();", 200) + "</script></head><body><nav>" +
		strings.Repeat(`<a href="/x?a=1&amp;b=2">Link</a> `, 300) + "</nav><main><h1>Edit conflict</h1>" +
		"<p>Someone else changed this page while you were editing it. Review &amp; merge their changes.</p>" +
		strings.Repeat("<div><p>More text &mdash; of the page.</p></div>", 300) + "</main></body></html>"
	for _, bc := range []struct{ name, body string }{
		{"nginx", nginx409},
		{"tomcat", tomcat409},
		{"page", big},
	} {
		u := Upstream{Status: 409, ContentType: "text/html; charset=utf-8", Body: []byte(bc.body)}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				NormalizeUpstream(u)
			}
		})
	}
}

// TestMarkupCutAtRune: text beyond the scan's limit is cut between runes.
func TestMarkupCutAtRune(t *testing.T) {
	for n := range 4 {
		body := "<p>" + strings.Repeat("x", n) + strings.Repeat("é", 600) + "</p>"
		h := htmlScan{hr: -1, limit: 64}
		h.run([]byte(body))
		if !h.stopped || len(h.blocks) != 1 {
			t.Fatalf("%d: stopped %v, blocks %+v", n, h.stopped, h.blocks)
		}
		if b := h.blocks[0].text; !utf8.ValidString(b) || len(b) > 65 || len(b) < 63 {
			t.Errorf("%d: block of %d bytes %q", n, len(b), b)
		}
	}
}
