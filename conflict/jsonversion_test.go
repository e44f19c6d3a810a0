package conflict

import (
	"errors"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	doc := []byte(`{"id":1,"version":7,"meta":{"rev":"3-abc","a/b":true,"list":[10,"x",{"v":2.5}]},"nil":null,"obj":{}}`)
	tests := []struct {
		ptr, want string
		err       error
	}{
		{"/version", "7", nil},
		{"/meta/rev", "3-abc", nil},
		{"/meta/a~1b", "true", nil},
		{"/meta/list/0", "10", nil},
		{"/meta/list/1", "x", nil},
		{"/meta/list/2/v", "2.5", nil},
		{"/meta/list/3", "", ErrNoValue},
		{"/meta/list/01", "", ErrNoValue},
		{"/meta/list/-", "", ErrNoValue},
		{"/missing", "", ErrNoValue},
		{"/nil", "", ErrNoValue},
		{"/obj", "", ErrNoValue},
		{"/version/deeper", "", ErrNoValue},
	}
	for _, tt := range tests {
		p, err := ParsePointer(tt.ptr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Lookup(doc, p)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("Lookup(%s) = %q, %v; want %q, %v", tt.ptr, got, err, tt.want, tt.err)
		}
	}
	for _, bad := range []string{`{"version":`, `{"version":1}x`, ``, `nope`} {
		if _, err := Lookup([]byte(bad), Pointer{"version"}); err == nil || errors.Is(err, ErrNoValue) {
			t.Errorf("Lookup(%q): want a syntax error, got %v", bad, err)
		}
	}
}

func TestParsePointer(t *testing.T) {
	for _, bad := range []string{"version", "/a~2", "/a~"} {
		if _, err := ParsePointer(bad); err == nil {
			t.Errorf("ParsePointer(%q) accepted", bad)
		}
	}
	p, err := ParsePointer("/a~1b/c~0d")
	if err != nil || len(p) != 2 || p[0] != "a/b" || p[1] != "c~d" || p.String() != "/a~1b/c~0d" {
		t.Errorf("got %q %v", p, err)
	}
}

func TestScalarTag(t *testing.T) {
	tests := []struct{ in, want string }{
		{"7", `"7"`},
		{"2024-01-01T00:00:00Z", `"2024-01-01T00:00:00Z"`},
		{`a "b" c`, `"a%20%22b%22%20c"`},
		{"100%", `"100%25"`},
		{"ünï", `"ünï"`},
	}
	for _, tt := range tests {
		got := ScalarTag(tt.in)
		if got != tt.want {
			t.Errorf("ScalarTag(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if tags, _, ok := ParseTags([]string{got}); !ok || len(tags) != 1 {
			t.Errorf("ScalarTag(%q) = %s is not a valid entity tag", tt.in, got)
		}
	}
}

func TestHashTag(t *testing.T) {
	a, b := HashTag([]byte("hello")), HashTag([]byte("hellp"))
	if a == b || len(a) != 18 || !strings.HasPrefix(a, `"`) {
		t.Fatalf("HashTag: %s %s", a, b)
	}
	if HashTag([]byte("hello")) != a {
		t.Fatal("HashTag is not deterministic")
	}
}

func FuzzLookup(f *testing.F) {
	f.Add([]byte(`{"version":7}`), "/version")
	f.Add([]byte(`[1,{"a":[true]}]`), "/1/a/0")
	f.Add([]byte(`{"a":`), "/a")
	f.Fuzz(func(t *testing.T, doc []byte, ptr string) {
		p, err := ParsePointer(ptr)
		if err != nil {
			return
		}
		v, err := Lookup(doc, p)
		if err == nil {
			tag := ScalarTag(v)
			if tags, _, ok := ParseTags([]string{tag}); !ok || len(tags) != 1 || tags[0] != tag {
				t.Fatalf("tag %s of %q does not parse back", tag, v)
			}
		}
	})
}

func benchDoc(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"id":1,"version":42,"items":[`)
	for i := 0; b.Len() < size-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":"item","n":12345}`)
	}
	b.WriteString(`],"tail":"x"}`)
	return []byte(b.String())
}

func BenchmarkLookup1KiB(b *testing.B)  { benchLookup(b, 1<<10) }
func BenchmarkLookup64KiB(b *testing.B) { benchLookup(b, 64<<10) }

func benchLookup(b *testing.B, size int) {
	doc := benchDoc(size)
	p := Pointer{"version"}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if v, err := Lookup(doc, p); err != nil || v != "42" {
			b.Fatal(v, err)
		}
	}
}

func BenchmarkHashTag1KiB(b *testing.B)  { benchHash(b, 1<<10) }
func BenchmarkHashTag64KiB(b *testing.B) { benchHash(b, 64<<10) }

func benchHash(b *testing.B, size int) {
	doc := benchDoc(size)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		_ = HashTag(doc)
	}
}
