package conflict

import (
	"bytes"
	"encoding/json"
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

// TestLookupAgreesWithReference: the one-pass scanner names what the
// decoding Lookup it replaced named, in the corners of encoding/json.
func TestLookupAgreesWithReference(t *testing.T) {
	deep := func(n int, inner string) string { return strings.Repeat("[", n) + inner + strings.Repeat("]", n) }
	tests := []struct{ doc, ptr string }{
		{`{"a":1,"a":2}`, "/a"},                            // the last duplicate wins
		{`{"a":{"v":1},"a":{}}`, "/a/v"},                   // also when it names nothing
		{`{"a":{},"a":{"v":"x"}}`, "/a/v"},                 //
		{`{"v\u0065rsion":3}`, "/version"},                 // names compared unescaped
		{`{"\u00e9":1}`, "/\u00e9"},                        //
		{"{\"\xff\":1}", "/\xff"},                          // invalid UTF-8 in a name is U+FFFD
		{"{\"\xff\":1}", "/\ufffd"},                        //
		{`{"a":"\ud800x"}`, "/a"},                          // a lone surrogate is U+FFFD
		{"{\"a\":\"\xfe\"}", "/a"},                         //
		{`{"a":"\u00e9\n"}`, "/a"},                         //
		{"\u00a0\v{\"a\":1}\f\u0085", "/a"},                // Unicode space around the document
		{"{\"a\":1}\v", "/a"},                              //
		{` {"a" : [ 1 , { "b" : -0.5e+3 } ] } `, "/a/1/b"}, //
		{`{"a":1} {"a":2}`, "/a"},                          // garbage after the value
		{`{"a":1,"b":}`, "/a"},                             //
		{`{"a":1,"b":[1}`, "/a"},                           //
		{`{"b":tru,"a":1}`, "/a"},                          // before it
		{`{"b":01,"a":1}`, "/a"},                           //
		{`{"b":"\x","a":1}`, "/a"},                         //
		{"{\"b\":\"\x01\",\"a\":1}", "/a"},                 //
		{`{"a":1e}`, "/a"},                                 // inside it
		{`{"a":-}`, "/a"},                                  //
		{`{"a":"x`, "/a"},                                  //
		{`"just a string"`, ""},                            //
		{`12`, ""},                                         //
		{`[]`, "/0"},                                       //
		{`[1,2]`, "/1"},                                    //
		{`[1,2]`, "/-"},                                    //
		{`{"":5}`, "/"},                                    //
		{deep(10000, "7"), ""},                             // encoding/json's nesting limit
		{deep(10001, "7"), ""},                             //
		{`{"a":` + deep(9999, "7") + `}`, "/a"},            //
		{`{"a":` + deep(10000, "7") + `}`, "/a"},           //
		{deep(9999, "[7]"), "/0/0/0"},                      //
		{"", ""},                                           //
		{"   ", "/a"},                                      //
	}
	for _, tt := range tests {
		p, err := ParsePointer(tt.ptr)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, []byte(tt.doc), p)
	}
}

// agree fails t when Lookup and lookupReference disagree on doc and p: the
// same value, ErrNoValue both, or the same syntax error.
func agree(t *testing.T, doc []byte, p Pointer) {
	t.Helper()
	want, wantErr := lookupReference(doc, p)
	got, err := Lookup(doc, p)
	short := doc
	if len(short) > 60 {
		short = short[:60]
	}
	switch {
	case wantErr == nil:
		if err != nil || got != want {
			t.Fatalf("Lookup(%q, %s) = %q, %v; the reference %q", short, p, got, err, want)
		}
	case errors.Is(wantErr, ErrNoValue):
		if !errors.Is(err, ErrNoValue) {
			t.Fatalf("Lookup(%q, %s) = %q, %v; the reference ErrNoValue", short, p, got, err)
		}
	default:
		if err == nil || err.Error() != wantErr.Error() {
			t.Fatalf("Lookup(%q, %s) = %q, %v; the reference %v", short, p, got, err, wantErr)
		}
	}
	if b, err := AppendLookup([]byte("x"), doc, p); !bytes.HasPrefix(b, []byte("x")) || err == nil && string(b[1:]) != got {
		t.Fatalf("AppendLookup(%q, %s) = %q, %v", short, p, b, err)
	}
}

// FuzzLookupReference: the one-pass Lookup agrees with the decoding one it
// replaced, on any bytes.
func FuzzLookupReference(f *testing.F) {
	f.Add([]byte(`{"version":7}`), "/version")
	f.Add([]byte(`[1,{"a":[true,"x\u00e9"]}]`), "/1/a/1")
	f.Add([]byte(`{"a":1,"a":{"b":null}}`), "/a/b")
	f.Add([]byte(`{"v\u0065":"\ud83d\ude00"}`), "/ve")
	f.Add([]byte(`{"a":[0,-1.5E+3,false]} `), "/a/1")
	f.Add([]byte(`{"a":`), "/a")
	f.Add([]byte(`{"a":1}x`), "/a")
	for _, seed := range blockSeeds() {
		f.Add([]byte(seed.doc), seed.ptr)
	}
	f.Fuzz(func(t *testing.T, doc []byte, ptr string) {
		p, err := ParsePointer(ptr)
		if err != nil {
			return
		}
		agree(t, doc, p)
		agreeByBlocks(t, doc, p)
	})
}

// agreeByBlocks is agree with every container read by blocks
// (skipBlocks), however small.
func agreeByBlocks(t *testing.T, doc []byte, p Pointer) {
	t.Helper()
	defer func(n int) { blockAfter = n }(blockAfter)
	blockAfter = 0
	agree(t, doc, p)
}

// lookupReference is the Lookup that decoded the containers on the path
// with encoding/json (before the one-pass scanner): the reference the
// scanner is fuzzed against.
func lookupReference(doc []byte, p Pointer) (string, error) {
	raw := json.RawMessage(bytes.TrimSpace(doc))
	if !json.Valid(raw) {
		var v any
		return "", json.Unmarshal(raw, &v) // the same error, with its offset
	}
	raw, ok, err := findRawReference(p, raw)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ErrNoValue
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", ErrNoValue
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", err
		}
		return s, nil
	case '{', '[', 'n':
		return "", ErrNoValue
	}
	return string(raw), nil
}

// findRawReference decodes only the containers on the way to p in the valid
// document raw; ok is false when p names nothing.
func findRawReference(p Pointer, raw json.RawMessage) (_ json.RawMessage, ok bool, err error) {
	for _, tok := range p {
		if len(raw) == 0 {
			return nil, false, nil
		}
		switch raw[0] {
		case '{':
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, false, err
			}
			if raw, ok = obj[tok]; !ok {
				return nil, false, nil
			}
		case '[':
			var arr []json.RawMessage
			if err := json.Unmarshal(raw, &arr); err != nil {
				return nil, false, err
			}
			i, ok := arrayIndex(tok, len(arr))
			if !ok {
				return nil, false, nil
			}
			raw = arr[i]
		default:
			return nil, false, nil
		}
	}
	return raw, true, nil
}

// benchDoc is a JSON document of about size bytes whose version field comes
// last, after everything else: the scanner must read the whole document.
func benchDoc(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"id":1,"items":[`)
	for i := 0; b.Len() < size-40; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"name":"item","n":12345}`)
	}
	b.WriteString(`],"tail":"x","version":42}`)
	return []byte(b.String())
}

func BenchmarkLookup1KiB(b *testing.B)           { benchLookup(b, 1<<10, Lookup) }
func BenchmarkLookup64KiB(b *testing.B)          { benchLookup(b, 64<<10, Lookup) }
func BenchmarkLookupReference1KiB(b *testing.B)  { benchLookup(b, 1<<10, lookupReference) }
func BenchmarkLookupReference64KiB(b *testing.B) { benchLookup(b, 64<<10, lookupReference) }

// BenchmarkAppendLookup64KiB is Lookup without the string it returns.
func BenchmarkAppendLookup64KiB(b *testing.B) {
	doc := benchDoc(64 << 10)
	p := Pointer{"version"}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var buf [64]byte
	for b.Loop() {
		if v, err := AppendLookup(buf[:0], doc, p); err != nil || string(v) != "42" {
			b.Fatal(v, err)
		}
	}
}

func benchLookup(b *testing.B, size int, lookup func([]byte, Pointer) (string, error)) {
	doc := benchDoc(size)
	if !bytes.HasSuffix(doc, []byte(`"version":42}`)) {
		b.Fatal("the version field is not last")
	}
	p := Pointer{"version"}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if v, err := lookup(doc, p); err != nil || v != "42" {
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
