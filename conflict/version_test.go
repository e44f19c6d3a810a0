package conflict

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"abc"`, "abc"},
		{`W/"abc"`, "abc"},
		{`"abc-gzip"`, "abc"}, // Caddy encode / Apache mod_deflate suffix
		{`"abc-zstd"`, "abc"},
		{`"abc-br"`, "abc"},
		{`W/"abc-gzip"`, "abc"},
		{`abc`, "abc"}, // legacy unquoted token
		{` "abc" `, "abc"},
		{`"-gzip"`, "-gzip"},     // nothing left to strip to
		{`"5e1f-3a"`, "5e1f-3a"}, // nginx mtime-size
		{`""`, ""},
	}
	for _, tt := range tests {
		if got := Canonical(tt.in); got != tt.want {
			t.Errorf("Canonical(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// canonicalPlain is Canonical's definition written plainly: trim, drop
// "W/", drop the quotes, drop one encoding suffix.
func canonicalPlain(tag string) string {
	tag = strings.TrimSpace(tag)
	tag = strings.TrimPrefix(tag, "W/")
	if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' {
		tag = tag[1 : len(tag)-1]
	}
	for _, s := range []string{"-gzip", "-zstd", "-br"} {
		if strings.HasSuffix(tag, s) && len(tag) > len(s) {
			return tag[:len(tag)-len(s)]
		}
	}
	return tag
}

// FuzzCanonical: Canonical, which runs for every version compared or
// stored, agrees with its plain definition on any input.
func FuzzCanonical(f *testing.F) {
	for _, seed := range []string{`"abc"`, `W/"abc-gzip"`, ` "x-br" `, "\u00a0\"v\"", `"-zstd"`, `W/`, `""`, "a-p", "é-gzip"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		if got, want := Canonical(tag), canonicalPlain(tag); got != want {
			t.Fatalf("Canonical(%q) = %q, want %q", tag, got, want)
		}
	})
}

// TestCanonicalMatchesDefinition compares Canonical with its definition,
// written plainly, on generated tags.
func TestCanonicalMatchesDefinition(t *testing.T) {
	plain := canonicalPlain
	parts := []string{"", " ", "\t", "\u00a0", "\u0085", "é", "W/", `"`, "a", "7", "-", "-gzip", "-zstd", "-br", "gzip", "p", "d", "r", "-b"}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		var b strings.Builder
		for range rng.IntN(6) {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		tag := b.String()
		if got, want := Canonical(tag), plain(tag); got != want {
			t.Fatalf("Canonical(%q) = %q, want %q", tag, got, want)
		}
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"abc"`, `"abc"`},
		{`W/"abc"`, `W/"abc"`},
		{`"abc-gzip"`, `"abc"`},
		{`7`, `"7"`},
		{`Tue, 15 Nov 1994 12:45:26 GMT`, `"Tue, 15 Nov 1994 12:45:26 GMT"`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSameVersion(t *testing.T) {
	if !SameVersion(`"v1-gzip"`, `"v1"`) || !SameVersion(`W/"v1"`, `v1`) {
		t.Error("suffix, W/ and quotes must not matter")
	}
	if SameVersion(`"v1"`, `"v2"`) {
		t.Error("different tags compared equal")
	}
}

func TestParseTags(t *testing.T) {
	tests := []struct {
		name  string
		in    []string
		tags  []string
		any   bool
		valid bool
	}{
		{"one", []string{`"a"`}, []string{`"a"`}, false, true},
		{"list", []string{`"a", W/"b" ,"c"`}, []string{`"a"`, `W/"b"`, `"c"`}, false, true},
		{"several lines", []string{`"a"`, `"b"`}, []string{`"a"`, `"b"`}, false, true},
		{"star", []string{`*`}, nil, true, true},
		{"legacy unquoted", []string{`abc, def`}, []string{`abc`, `def`}, false, true},
		{"comma inside quotes", []string{`"a,b"`}, []string{`"a,b"`}, false, true},
		{"empty elements", []string{` , "a",, `}, []string{`"a"`}, false, true},
		{"empty header", []string{``}, nil, false, true},
		{"unterminated", []string{`"abc`}, nil, false, false},
		{"W/ without quote", []string{`W/abc`}, nil, false, false},
		{"star and list", []string{`*, "a"`}, nil, false, false},
		{"garbage after tag", []string{`"a"x`}, nil, false, false},
		{"control char in tag", []string{"\"a\x01\""}, nil, false, false},
		{"space inside quotes", []string{`"a b"`}, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tags, any, ok := ParseTags(tt.in)
			if ok != tt.valid || any != tt.any || !slices.Equal(tags, tt.tags) {
				t.Errorf("ParseTags(%q) = %q, %v, %v; want %q, %v, %v", tt.in, tags, any, ok, tt.tags, tt.any, tt.valid)
			}
		})
	}
}

func FuzzParseTags(f *testing.F) {
	for _, s := range []string{`"a"`, `W/"a", "b"`, `*`, `abc`, `"a`, `W/`, `, ,`, "\"\xff\"", `"a"-gzip`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, any, ok := ParseTags([]string{s})
		if !ok {
			return
		}
		if any && len(tags) > 0 {
			t.Fatalf("both * and tags from %q", s)
		}
		for _, tag := range tags {
			if tag == "" {
				t.Fatalf("empty tag from %q", s)
			}
			// A parsed tag parses again to itself.
			again, _, ok2 := ParseTags([]string{tag})
			if !ok2 || len(again) != 1 || again[0] != tag {
				t.Fatalf("tag %q from %q does not parse back: %q %v", tag, s, again, ok2)
			}
			_ = Canonical(tag)
		}
	})
}

func BenchmarkParseTags(b *testing.B) {
	in := []string{`"5e1f-3a-gzip"`}
	b.ReportAllocs()
	for b.Loop() {
		tags, _, _ := ParseTags(in)
		_ = Canonical(tags[0])
	}
}
