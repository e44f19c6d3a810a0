package conflict

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sameJSON reports whether two JSON texts are the same value (member order
// ignored).
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	x, err := parseJSON(a)
	if err != nil {
		t.Fatalf("not JSON: %s", a)
	}
	y, err := parseJSON(b)
	if err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return equal(x, y)
}

func TestDiffAndChangedPaths(t *testing.T) {
	tests := []struct {
		name, from, to, patch string
		paths                 []string
	}{
		{"identical", `{"a":1,"b":[1,2]}`, `{"b":[1,2],"a":1}`, `{}`, nil},
		{"changed member", `{"title":"Hello","body":"x"}`, `{"title":"Hi","body":"x"}`, `{"title":"Hi"}`, []string{"/title"}},
		{"added member", `{"a":1}`, `{"a":1,"c":true}`, `{"c":true}`, []string{"/c"}},
		{"removed member", `{"a":1,"b":2}`, `{"a":1}`, `{"b":null}`, []string{"/b"}},
		{"nested change", `{"meta":{"x":1,"y":2}}`, `{"meta":{"x":1,"y":3}}`, `{"meta":{"y":3}}`, []string{"/meta/y"}},
		{"nested removal", `{"meta":{"x":1,"y":2}}`, `{"meta":{"x":1}}`, `{"meta":{"y":null}}`, []string{"/meta/y"}},
		{"deep", `{"a":{"b":{"c":{"d":1}}}}`, `{"a":{"b":{"c":{"d":2}}}}`, `{"a":{"b":{"c":{"d":2}}}}`, []string{"/a/b/c/d"}},
		{"array is a value", `{"tags":["a","b"]}`, `{"tags":["a","c"]}`, `{"tags":["a","c"]}`, []string{"/tags"}},
		{"objects in arrays", `{"l":[{"a":1}]}`, `{"l":[{"a":2}]}`, `{"l":[{"a":2}]}`, []string{"/l"}},
		{"object to string", `{"a":{"x":1}}`, `{"a":"s"}`, `{"a":"s"}`, []string{"/a"}},
		{"string to object", `{"a":"s"}`, `{"a":{"x":1}}`, `{"a":{"x":1}}`, []string{"/a"}},
		{"number to string", `{"n":1}`, `{"n":"1"}`, `{"n":"1"}`, []string{"/n"}},
		{"null to value", `{"a":null}`, `{"a":0}`, `{"a":0}`, []string{"/a"}},
		// RFC 7396 section 1: a null member cannot be set by a merge patch;
		// it reads as a removal.
		{"value to null", `{"a":1}`, `{"a":null}`, `{"a":null}`, []string{"/a"}},
		{"numbers by value", `{"n":1.0,"m":100}`, `{"n":1,"m":1e2}`, `{}`, nil},
		{"escaped names", `{"a/b":1,"c~d":1}`, `{"a/b":2,"c~d":2}`, `{"a/b":2,"c~d":2}`, []string{"/a~1b", "/c~0d"}},
		{"order of to, removals last", `{"z":1,"y":1,"x":1}`, `{"b":2,"y":2,"a":3}`, `{"b":2,"y":2,"a":3,"z":null,"x":null}`,
			[]string{"/b", "/y", "/a", "/z", "/x"}},
		{"unicode", `{"t":"caf\u00e9"}`, `{"t":"café"}`, `{}`, nil},
		{"scalar documents", `"x"`, `3`, `3`, []string{""}},
		{"arrays as documents", `[1]`, `[2]`, `[2]`, []string{""}},
		{"object to array", `{"a":1}`, `[1]`, `[1]`, []string{""}},
		{"same scalar", `true`, `true`, `true`, nil},
		{"to null document", `{"a":1}`, `null`, `null`, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			patch, err := Diff([]byte(tt.from), []byte(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			if string(patch) != tt.patch {
				t.Errorf("Diff = %s, want %s", patch, tt.patch)
			}
			paths, err := ChangedPaths([]byte(tt.from), []byte(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(paths, tt.paths) {
				t.Errorf("ChangedPaths = %q, want %q", paths, tt.paths)
			}
			got, err := Apply([]byte(tt.from), patch)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.to
			if tt.name == "value to null" {
				want = `{}`
			}
			if !sameJSON(t, got, []byte(want)) {
				t.Errorf("Apply(from, Diff) = %s, want %s", got, want)
			}
		})
	}
}

// TestApplyRFC7396 is the table of RFC 7396 Appendix A.
func TestApplyRFC7396(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	}
	for _, tt := range tests {
		got, err := Apply([]byte(tt.target), []byte(tt.patch))
		if err != nil {
			t.Fatalf("%s + %s: %v", tt.target, tt.patch, err)
		}
		if string(got) != tt.want {
			t.Errorf("Apply(%s, %s) = %s, want %s", tt.target, tt.patch, got, tt.want)
		}
	}
}

func TestRebaseDocument(t *testing.T) {
	const base = `{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`
	tests := []struct {
		name, base, theirs, mine string
		version                  string
		merged                   string
		conflicts                []string
	}{
		{"disjoint fields", base,
			`{"id":1,"title":"Hello, world","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Hello","body":"Second draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, "",
			`{"id":1,"title":"Hello, world","body":"Second draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, nil},
		{"same field", base,
			`{"id":1,"title":"Theirs","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Mine","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, "",
			"", []string{"/title"}},
		{"same field, same value", base,
			`{"id":1,"title":"Both","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Both","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, "",
			"", []string{"/title"}},
		{"nested disjoint", base,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":10,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":20},"tags":["x"],"gone":true}`, "",
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":10,"b":20},"tags":["x"],"gone":true}`, nil},
		{"nested against replaced", base,
			`{"id":1,"title":"Hello","body":"First draft","meta":"none","tags":["x"],"gone":true}`,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":20},"tags":["x"],"gone":true}`, "",
			"", []string{"/meta"}},
		{"arrays are values", base,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x","y"],"gone":true}`,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["z","x"],"gone":true}`, "",
			"", []string{"/tags"}},
		{"their array, my field", base,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x","y"],"gone":true}`,
			`{"id":1,"title":"Mine","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, "",
			`{"id":1,"title":"Mine","body":"First draft","meta":{"a":1,"b":2},"tags":["x","y"],"gone":true}`, nil},
		{"I remove a member", base,
			`{"id":1,"title":"New","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x"]}`, "",
			`{"id":1,"title":"New","body":"First draft","meta":{"a":1,"b":2},"tags":["x"]}`, nil},
		{"I set null (kept in a document write)", base,
			`{"id":1,"title":"New","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Hello","body":null,"meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, "",
			`{"id":1,"title":"New","body":null,"meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, nil},
		{"they removed what I changed", base,
			`{"id":1,"title":"Hello","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			`{"id":1,"title":"Hello","body":"Mine","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, "",
			"", []string{"/body"}},
		{"both removed", base,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x"]}`,
			`{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x"]}`, "",
			"", []string{"/gone"}},
		{"both added", `{"a":1}`, `{"a":1,"n":1}`, `{"a":1,"n":2}`, "", "", []string{"/n"}},
		{"added on both sides, different members", `{"a":1}`, `{"a":1,"t":1}`, `{"a":1,"m":2}`, "",
			`{"a":1,"t":1,"m":2}`, nil},
		{"type change against change", `{"n":1,"o":0}`, `{"n":"1","o":0}`, `{"n":2,"o":0}`, "", "", []string{"/n"}},
		{"type change, disjoint", `{"n":1,"o":0}`, `{"n":"1","o":0}`, `{"n":1,"o":5}`, "", `{"n":"1","o":5}`, nil},
		{"I wrote what I read", base,
			`{"id":1,"title":"New","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`,
			base, "",
			`{"id":1,"title":"New","body":"First draft","meta":{"a":1,"b":2},"tags":["x"],"gone":true}`, nil},
		{"scalar documents, theirs only", `"a"`, `"b"`, `"a"`, "", `"b"`, nil},
		{"scalar documents, mine only", `"a"`, `"a"`, `"c"`, "", `"c"`, nil},
		{"scalar documents, both", `"a"`, `"b"`, `"c"`, "", "", []string{""}},
		{"array documents", `[1]`, `[1,2]`, `[0,1]`, "", "", []string{""}},
		{"document replaced by an array", `{"a":1}`, `[1]`, `{"a":2}`, "", "", []string{""}},
		{"version field is the precondition", `{"v":1,"t":"a","b":"x"}`, `{"v":2,"t":"A","b":"x"}`,
			`{"v":1,"t":"a","b":"y"}`, "/v", `{"v":2,"t":"A","b":"y"}`, nil},
		{"version field left out", `{"v":1,"t":"a","b":"x"}`, `{"v":2,"t":"A","b":"x"}`,
			`{"t":"a","b":"y"}`, "/v", `{"v":2,"t":"A","b":"y"}`, nil},
		{"version field changed by the client", `{"v":1,"t":"a","b":"x"}`, `{"v":2,"t":"A","b":"x"}`,
			`{"v":2,"t":"a","b":"y"}`, "/v", "", []string{"/v"}},
		{"nested version field", `{"m":{"rev":"1-a"},"t":"a","b":"x"}`, `{"m":{"rev":"2-b"},"t":"A","b":"x"}`,
			`{"m":{"rev":"1-a"},"t":"a","b":"y"}`, "/m/rev", `{"m":{"rev":"2-b"},"t":"A","b":"y"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ptr Pointer
			if tt.version != "" {
				ptr, _ = ParsePointer(tt.version)
			}
			r, err := RebaseDocument([]byte(tt.base), []byte(tt.theirs), []byte(tt.mine), ptr)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Conflicts, tt.conflicts) {
				t.Fatalf("Conflicts = %q, want %q", r.Conflicts, tt.conflicts)
			}
			if tt.conflicts != nil {
				if r.Body != nil {
					t.Errorf("a conflict has a body: %s", r.Body)
				}
				return
			}
			if string(r.Body) != tt.merged {
				t.Errorf("merged = %s\nwant     %s", r.Body, tt.merged)
			}
			// The overlap of changed paths agrees with the merge.
			mine, _ := ChangedPaths([]byte(tt.base), []byte(tt.mine))
			theirs, _ := ChangedPaths([]byte(tt.base), []byte(tt.theirs))
			if ptr == nil {
				if o := Overlap(mine, theirs); o != nil {
					t.Errorf("merged although the changed paths overlap: %q", o)
				}
			}
		})
	}
}

func TestRebasePatch(t *testing.T) {
	const base = `{"id":1,"title":"Hello","body":"First draft","meta":{"a":1,"b":2},"tags":["x"]}`
	const theirs = `{"id":1,"title":"Hello, world","body":"First draft","meta":{"a":10,"b":2},"tags":["x"]}`
	tests := []struct {
		name, patch, version string
		body, merged         string
		conflicts            []string
	}{
		{"disjoint", `{"body":"Second draft"}`, "", `{"body":"Second draft"}`,
			`{"id":1,"title":"Hello, world","body":"Second draft","meta":{"a":10,"b":2},"tags":["x"]}`, nil},
		{"same field", `{"title":"Mine"}`, "", "", "", []string{"/title"}},
		// The patch is replayed on the current state: setting a field to the
		// value it had in base would undo their change.
		{"same field, base's value", `{"title":"Hello"}`, "", "", "", []string{"/title"}},
		{"nested disjoint", `{"meta":{"b":20}}`, "", `{"meta":{"b":20}}`,
			`{"id":1,"title":"Hello, world","body":"First draft","meta":{"a":10,"b":20},"tags":["x"]}`, nil},
		{"nested same", `{"meta":{"a":5}}`, "", "", "", []string{"/meta/a"}},
		{"replaces a changed object", `{"meta":"flat"}`, "", "", "", []string{"/meta"}},
		{"removes an untouched member", `{"tags":null}`, "", `{"tags":null}`,
			`{"id":1,"title":"Hello, world","body":"First draft","meta":{"a":10,"b":2}}`, nil},
		{"removes a changed member", `{"title":null}`, "", "", "", []string{"/title"}},
		{"array member", `{"tags":["y"]}`, "", `{"tags":["y"]}`,
			`{"id":1,"title":"Hello, world","body":"First draft","meta":{"a":10,"b":2},"tags":["y"]}`, nil},
		{"object onto a scalar", `{"body":{"text":"x"}}`, "", `{"body":{"text":"x"}}`,
			`{"id":1,"title":"Hello, world","body":{"text":"x"},"meta":{"a":10,"b":2},"tags":["x"]}`, nil},
		{"non-object patch", `"replaced"`, "", "", "", []string{""}},
		{"empty patch", `{}`, "", `{}`, theirs, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := RebasePatch([]byte(base), []byte(theirs), []byte(tt.patch), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Conflicts, tt.conflicts) {
				t.Fatalf("Conflicts = %q, want %q", r.Conflicts, tt.conflicts)
			}
			if tt.conflicts != nil {
				return
			}
			if string(r.Body) != tt.body {
				t.Errorf("body = %s, want %s", r.Body, tt.body)
			}
			if string(r.Merged) != tt.merged {
				t.Errorf("merged = %s\nwant     %s", r.Merged, tt.merged)
			}
		})
	}

	t.Run("version field moved", func(t *testing.T) {
		ptr, _ := ParsePointer("/version")
		r, err := RebasePatch([]byte(`{"version":3,"a":1,"b":1}`), []byte(`{"version":4,"a":2,"b":1}`),
			[]byte(`{"version":3,"b":5}`), ptr)
		if err != nil || r.Conflicts != nil {
			t.Fatalf("%v %q", err, r.Conflicts)
		}
		if string(r.Body) != `{"version":4,"b":5}` || string(r.Merged) != `{"version":4,"a":2,"b":5}` {
			t.Errorf("body %s, merged %s", r.Body, r.Merged)
		}
		// A version the client made up is content, and conflicts.
		r, _ = RebasePatch([]byte(`{"version":3,"a":1}`), []byte(`{"version":4,"a":2}`), []byte(`{"version":9}`), ptr)
		if !slices.Equal(r.Conflicts, []string{"/version"}) {
			t.Errorf("Conflicts = %q", r.Conflicts)
		}
	})
	t.Run("not JSON", func(t *testing.T) {
		if _, err := RebasePatch([]byte(base), []byte(theirs), []byte(`{"a":`), nil); err == nil {
			t.Error("no error for a broken patch")
		}
		if _, err := RebaseDocument([]byte(`<html>`), []byte(theirs), []byte(base), nil); err == nil {
			t.Error("no error for a non-JSON base")
		}
	})
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		mine, theirs, want []string
	}{
		{[]string{"/a"}, []string{"/b"}, nil},
		{[]string{"/a"}, []string{"/a"}, []string{"/a"}},
		{[]string{"/a/b"}, []string{"/a"}, []string{"/a"}},
		{[]string{"/a"}, []string{"/a/b", "/a/c"}, []string{"/a"}},
		{[]string{"/ab"}, []string{"/a"}, nil},
		{[]string{"/a/b", "/a/c"}, []string{"/a/c", "/d"}, []string{"/a/c"}},
		{[]string{""}, []string{"/x"}, []string{""}},
		{[]string{"/x"}, []string{""}, []string{""}},
		{[]string{"/x", "/y"}, []string{""}, []string{""}},
		{nil, []string{"/x"}, nil},
	}
	for _, tt := range tests {
		if got := Overlap(tt.mine, tt.theirs); !slices.Equal(got, tt.want) {
			t.Errorf("Overlap(%q, %q) = %q, want %q", tt.mine, tt.theirs, got, tt.want)
		}
	}
}

func TestExplain(t *testing.T) {
	h, err := Explain([]byte(`{"title":"A","body":"x","n":1}`), []byte(`{"title":"B","body":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(h.Changes) != `{"title":"B","n":null}` || !slices.Equal(h.ChangedPaths, []string{"/title", "/n"}) {
		t.Errorf("got %s %q", h.Changes, h.ChangedPaths)
	}
	h, _ = Explain([]byte(`{"a":1}`), []byte(`{"a":1}`))
	if string(h.Changes) != `{}` || h.ChangedPaths == nil || len(h.ChangedPaths) != 0 {
		t.Errorf("no change: got %s %q", h.Changes, h.ChangedPaths)
	}
}

func TestEchoes(t *testing.T) {
	v, _ := ParsePointer("/version")
	tests := []struct {
		resp, body string
		version    Pointer
		want       bool
	}{
		{`{"id":1,"title":"x","body":"y"}`, `{"title":"x","body":"y"}`, nil, true},
		{`{"id":1,"title":"x","body":"y","updatedAt":"now"}`, `{"title":"x"}`, nil, true},
		{`{"ok":true,"id":"1","rev":"2-a"}`, `{"title":"x","body":"y"}`, nil, false},
		{`{"id":1,"title":"x"}`, `{"title":"x","gone":null}`, nil, true},
		{`{"id":1,"title":"x","gone":1}`, `{"title":"x","gone":null}`, nil, false},
		{`{"id":1,"m":{"a":1,"b":2}}`, `{"m":{"a":1}}`, nil, true},
		{`{"id":1,"version":4,"t":"x"}`, `{"version":3,"t":"x"}`, v, true},
		{`{"id":1,"version":4,"t":"x"}`, `{"version":3,"t":"x"}`, nil, false},
		{`[1]`, `[1]`, nil, false},
		{`not json`, `{}`, nil, false},
	}
	for _, tt := range tests {
		if got := Echoes([]byte(tt.resp), []byte(tt.body), tt.version); got != tt.want {
			t.Errorf("Echoes(%s, %s) = %v, want %v", tt.resp, tt.body, got, tt.want)
		}
	}
}

func TestParseJSON(t *testing.T) {
	good := []string{`{}`, `[]`, ` {"a" : [ 1 , -2.5e+3, true, false, null, "x\"y\u00e9"] } `, `0`, `-0.0`, `"\ud83d\ude00"`,
		`{"a":1,"a":2}`, "\"\xff\""}
	for _, s := range good {
		v, err := parseJSON([]byte(s))
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		checkRoundTrip(t, []byte(s), v)
	}
	bad := []string{``, ` `, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `01`, `1.`, `.5`, `-`, `1e`, `tru`, `nul`, `"a`,
		"\"a\x01\"", `{"a":1}x`, `{1:2}`, `[1 2]`, `"\x"`, strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)}
	for _, s := range bad {
		if _, err := parseJSON([]byte(s)); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
	// Duplicates: the last value wins, as in encoding/json.
	v, _ := parseJSON([]byte(`{"a":1,"b":0,"a":2}`))
	if got := string(render(v)); got != `{"a":2,"b":0}` {
		t.Errorf("duplicates: %s", got)
	}
	// Large objects use an index.
	var b strings.Builder
	b.WriteString("{")
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":%d`, i, i)
	}
	b.WriteString("}")
	v, _ = parseJSON([]byte(b.String()))
	o := v.(*object)
	if x, ok := o.get("k77"); !ok || x != number("77") {
		t.Errorf("k77 = %v", x)
	}
	o.remove("k10")
	if _, ok := o.get("k10"); ok || len(o.names) != 99 {
		t.Error("remove from an indexed object")
	}
	if x, _ := o.get("k99"); x != number("99") {
		t.Errorf("k99 after remove = %v", x)
	}
}

// checkRoundTrip: rendering the tree gives valid JSON that encoding/json
// reads as the same value as the input.
func checkRoundTrip(t *testing.T, in []byte, v any) {
	t.Helper()
	out := render(v)
	if !json.Valid(out) {
		t.Fatalf("render(%q) = %q is not valid JSON", in, out)
	}
	if !reflect.DeepEqual(decodeStd(t, in), decodeStd(t, out)) {
		t.Fatalf("render(%q) = %q reads differently", in, out)
	}
}

func decodeStd(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%q: %v", data, err)
	}
	return v
}

// withoutNulls removes null object members, which a merge patch cannot set.
func withoutNulls(v any) any {
	if o, ok := v.(*object); ok {
		n := &object{}
		for i, name := range o.names {
			if o.values[i] != nil {
				n.set(name, withoutNulls(o.values[i]))
			}
		}
		return n
	}
	return v
}

// FuzzDiff: the parser accepts exactly the JSON encoding/json accepts and
// renders it faithfully; for two objects, applying Diff(from, to) to from
// gives to (up to null members, which RFC 7396 cannot set), ChangedPaths
// is empty exactly when they are equal, and a document rebased onto itself
// is the client's.
func FuzzDiff(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":{"c":[1,2]},"d":null}`), []byte(`{"a":2,"b":{"c":[1],"e":"x"}}`))
	f.Add([]byte(`{"title":"Hello"}`), []byte(`{"title":"Hello","body":"x"}`))
	f.Add([]byte(`{"a":{"b":{"c":1}}}`), []byte(`{"a":{"b":"c"}}`))
	f.Add([]byte(`[1,2]`), []byte(`{"a":"b"}`))
	f.Add([]byte(`{"a/b":1,"~":2}`), []byte(`{"a/b":1.0,"~":3}`))
	f.Add([]byte(`{"e":"\u00e9\ud83d\ude00"}`), []byte(`{"e":"\"\\"}`))
	f.Fuzz(func(t *testing.T, from, to []byte) {
		fv, ferr := parseJSON(from)
		tv, terr := parseJSON(to)
		if (ferr == nil) != json.Valid(from) || (terr == nil) != json.Valid(to) {
			if bytes.Count(from, []byte("[")) < maxDepth/2 && bytes.Count(to, []byte("[")) < maxDepth/2 {
				t.Fatalf("parser and encoding/json disagree on %q (%v) or %q (%v)", from, ferr, to, terr)
			}
		}
		if ferr != nil || terr != nil {
			return
		}
		checkRoundTrip(t, from, fv)
		patch, err := Diff(from, to)
		if err != nil {
			t.Fatal(err)
		}
		paths, _ := ChangedPaths(from, to)
		if (len(paths) == 0) != equal(fv, tv) {
			t.Fatalf("ChangedPaths(%s, %s) = %q", from, to, paths)
		}
		_, fo := fv.(*object)
		_, to2 := tv.(*object)
		if !fo || !to2 {
			return
		}
		got, err := Apply(from, patch)
		if err != nil {
			t.Fatal(err)
		}
		gv, _ := parseJSON(got)
		if !equal(withoutNulls(gv), withoutNulls(tv)) {
			t.Fatalf("Apply(%s, Diff = %s) = %s, want %s", from, patch, got, to)
		}
		// Nothing changed on their side: the rebase is the client's document.
		r, err := RebaseDocument(from, from, to, nil)
		if err != nil || r.Conflicts != nil {
			t.Fatalf("RebaseDocument(from, from, to): %v %q", err, r.Conflicts)
		}
		rv, _ := parseJSON(r.Body)
		if !equal(rv, tv) {
			t.Fatalf("RebaseDocument(from, from, %s) = %s", to, r.Body)
		}
	})
}

// doc returns a JSON object of about size bytes: an article with nested
// metadata and a list of comments.
func doc(size int, title string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"id":42,"title":%q,"body":"Lorem ipsum","meta":{"author":"ann","rev":3,"labels":["a","b"]},"comments":[`, title)
	for i := 0; b.Len() < size-120; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":%d,"by":"user%d","text":"a comment with some words in it, number %d"}`, i, i%7, i)
	}
	b.WriteString(`],"fields":{`)
	for i := range 8 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"f%d":"value %d"`, i, i)
	}
	b.WriteString("}}")
	return []byte(b.String())
}

func BenchmarkDiff(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("size=%dKiB", size>>10), func(b *testing.B) {
			from := doc(size, "Hello")
			to := bytes.Replace(doc(size, "Hello, world"), []byte(`"f3":"value 3"`), []byte(`"f3":"changed"`), 1)
			b.SetBytes(int64(len(from) + len(to)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Explain(from, to); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The yardstick, in the same run: decoding both documents with
		// encoding/json, which a diff cannot do without.
		b.Run(fmt.Sprintf("encoding-json-decode-both/size=%dKiB", size>>10), func(b *testing.B) {
			from, to := doc(size, "Hello"), doc(size, "Hello, world")
			b.SetBytes(int64(len(from) + len(to)))
			b.ReportAllocs()
			for b.Loop() {
				var x, y any
				if json.Unmarshal(from, &x) != nil || json.Unmarshal(to, &y) != nil {
					b.Fatal("decode")
				}
			}
		})
	}
}

func BenchmarkRebase(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		base := doc(size, "Hello")
		theirs := doc(size, "Hello, world")
		mine := bytes.Replace(base, []byte(`"body":"Lorem ipsum"`), []byte(`"body":"Second draft"`), 1)
		b.Run(fmt.Sprintf("document/size=%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(base)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := RebaseDocument(base, theirs, mine, nil)
				if err != nil || r.Conflicts != nil {
					b.Fatal(err, r.Conflicts)
				}
			}
		})
		b.Run(fmt.Sprintf("patch/size=%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(base)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := RebasePatch(base, theirs, []byte(`{"body":"Second draft"}`), nil)
				if err != nil || r.Conflicts != nil {
					b.Fatal(err, r.Conflicts)
				}
			}
		})
	}
}
