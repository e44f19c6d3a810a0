package conflict

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

func TestArrayIndex(t *testing.T) {
	tests := []struct {
		tok string
		n   int
		i   int
		ok  bool
	}{
		{"0", 3, 0, true},
		{"2", 3, 2, true},
		{"3", 3, 0, false},
		{"10", 11, 10, true},
		{"01", 3, 0, false}, // RFC 6901 section 4: no leading zero
		{"00", 3, 0, false},
		{"-", 3, 0, false}, // the element after the last: nothing to read
		{"+1", 3, 0, false},
		{"-0", 3, 0, false},
		{" 1", 3, 0, false},
		{"1e0", 3, 0, false},
		{"", 3, 0, false},
		{"99999999999999999999999", 3, 0, false},
	}
	for _, tt := range tests {
		i, ok := arrayIndex(tt.tok, tt.n)
		if i != tt.i || ok != tt.ok {
			t.Errorf("arrayIndex(%q, %d) = %d, %v; want %d, %v", tt.tok, tt.n, i, ok, tt.i, tt.ok)
		}
	}
}

// TestPointerIntoArrays: a version field inside an array is the same field
// for the ETag (Lookup), the write response (Echoes), the rebase of a stale
// write and a guard reference.
func TestPointerIntoArrays(t *testing.T) {
	tests := []struct {
		name, pointer string
		// Lookup and ReferenceValues read doc.
		doc, value string
		// Echoes(resp, body) with the version at pointer.
		resp, body string
		// RebaseDocument(base, theirs, mine); RebasePatch(base, theirs, patch).
		base, theirs, mine, merged, patch, patchBody, patchMerged string
	}{
		{
			name: "array of objects", pointer: "/a/0/v",
			doc: `{"a":[{"v":7,"x":1}]}`, value: "7",
			resp: `{"a":[{"v":8,"x":1}]}`, body: `{"a":[{"v":7,"x":1}]}`,
			base:   `{"a":[{"v":7,"x":1}],"t":"a"}`,
			theirs: `{"a":[{"v":8,"x":1}],"t":"a"}`,
			mine:   `{"a":[{"v":7,"x":2}],"t":"a"}`, merged: `{"a":[{"v":8,"x":2}],"t":"a"}`,
			patch: `{"a":[{"v":7,"x":2}]}`, patchBody: `{"a":[{"v":8,"x":2}]}`,
			patchMerged: `{"a":[{"v":8,"x":2}],"t":"a"}`,
		},
		{
			name: "second element, nested arrays", pointer: "/a/1/0",
			doc: `{"a":[0,["r1",1]]}`, value: "r1",
			resp: `{"a":[0,["r2",1]]}`, body: `{"a":[0,["r1",1]]}`,
			base:   `{"a":[0,["r1",1]],"t":"a"}`,
			theirs: `{"a":[0,["r2",1]],"t":"a"}`,
			mine:   `{"a":[5,["r1",1]],"t":"a"}`, merged: `{"a":[5,["r2",1]],"t":"a"}`,
			patch: `{"a":[5,["r1",1]]}`, patchBody: `{"a":[5,["r2",1]]}`,
			patchMerged: `{"a":[5,["r2",1]],"t":"a"}`,
		},
		{
			name: "escaped names around an array", pointer: "/m~1n/0/r~0v",
			doc: `{"m/n":[{"r~v":"3-a"}]}`, value: "3-a",
			resp: `{"m/n":[{"r~v":"4-b"}],"t":"x"}`, body: `{"m/n":[{"r~v":"3-a"}],"t":"x"}`,
			base:   `{"m/n":[{"r~v":"3-a"}],"t":"a"}`,
			theirs: `{"m/n":[{"r~v":"4-b"}],"t":"b"}`,
			mine:   `{"m/n":[{"r~v":"3-a","k":1}],"t":"a"}`, merged: `{"m/n":[{"r~v":"4-b","k":1}],"t":"b"}`,
			patch: `{"m/n":[{"r~v":"3-a","k":1}]}`, patchBody: `{"m/n":[{"r~v":"4-b","k":1}]}`,
			patchMerged: `{"m/n":[{"r~v":"4-b","k":1}],"t":"b"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePointer(tt.pointer)
			if err != nil {
				t.Fatal(err)
			}
			if v, err := Lookup([]byte(tt.doc), p); v != tt.value || err != nil {
				t.Errorf("Lookup = %q, %v; want %q", v, err, tt.value)
			}
			if v, err := ReferenceValues([]byte(tt.doc), p); !slices.Equal(v, []string{tt.value}) || err != nil {
				t.Errorf("ReferenceValues = %q, %v; want %q", v, err, tt.value)
			}
			if !Echoes([]byte(tt.resp), []byte(tt.body), p) {
				t.Errorf("Echoes(%s, %s) = false: the version field was compared as content", tt.resp, tt.body)
			}
			if Echoes([]byte(tt.resp), []byte(tt.body), nil) {
				t.Errorf("Echoes without a version field = true")
			}
			r, err := RebaseDocument([]byte(tt.base), []byte(tt.theirs), []byte(tt.mine), p)
			if err != nil || r.Conflicts != nil || string(r.Body) != tt.merged {
				t.Errorf("RebaseDocument = %s, conflicts %q, %v; want %s", r.Body, r.Conflicts, err, tt.merged)
			}
			r, err = RebasePatch([]byte(tt.base), []byte(tt.theirs), []byte(tt.patch), p)
			if err != nil || r.Conflicts != nil || string(r.Body) != tt.patchBody || string(r.Merged) != tt.patchMerged {
				t.Errorf("RebasePatch = body %s, merged %s, conflicts %q, %v; want %s, %s",
					r.Body, r.Merged, r.Conflicts, err, tt.patchBody, tt.patchMerged)
			}
			// The array is still content: their change elsewhere in it
			// conflicts with mine.
			theirs := tt.theirs[:len(tt.theirs)-1] + `,"extra":1}`
			if r, _ := RebaseDocument([]byte(tt.base), []byte(theirs), []byte(tt.mine), p); r.Conflicts != nil {
				t.Errorf("a change outside the array conflicts: %q", r.Conflicts)
			}
		})
	}

	t.Run("a change of the array beside the version conflicts", func(t *testing.T) {
		p, _ := ParsePointer("/a/0/v")
		base := `{"a":[{"v":7,"x":1}]}`
		theirs := `{"a":[{"v":8,"x":9}]}`
		r, _ := RebaseDocument([]byte(base), []byte(theirs), []byte(`{"a":[{"v":7,"x":2}]}`), p)
		if !slices.Equal(r.Conflicts, []string{"/a"}) {
			t.Errorf("RebaseDocument conflicts %q, want [/a]", r.Conflicts)
		}
		r, _ = RebasePatch([]byte(base), []byte(theirs), []byte(`{"a":[{"v":7,"x":2}]}`), p)
		if !slices.Equal(r.Conflicts, []string{"/a"}) {
			t.Errorf("RebasePatch conflicts %q, want [/a]", r.Conflicts)
		}
	})
	t.Run("- and leading zeros name nothing", func(t *testing.T) {
		for _, ptr := range []string{"/a/-/v", "/a/00/v", "/a/1/v"} {
			p, _ := ParsePointer(ptr)
			if _, err := Lookup([]byte(`{"a":[{"v":7}]}`), p); !errors.Is(err, ErrNoValue) {
				t.Errorf("Lookup(%s) = %v, want ErrNoValue", ptr, err)
			}
			if Echoes([]byte(`{"a":[{"v":8}]}`), []byte(`{"a":[{"v":7}]}`), p) {
				t.Errorf("Echoes with %s = true", ptr)
			}
		}
	})
}

func TestPointerSet(t *testing.T) {
	tests := []struct{ doc, pointer, val, want string }{
		{`{"a":1}`, "/a", `2`, `{"a":2}`},
		{`{"a":1}`, "/b", `2`, `{"a":1,"b":2}`},
		{`{}`, "/m/rev", `"x"`, `{"m":{"rev":"x"}}`},         // objects created on the way
		{`{"m":null}`, "/m/rev", `"x"`, `{"m":{"rev":"x"}}`}, // also for null
		{`{"m":3}`, "/m/rev", `"x"`, `{"m":3}`},              // a scalar on the way: unchanged
		{`{"a":[1,{"v":1}]}`, "/a/1/v", `2`, `{"a":[1,{"v":2}]}`},
		{`{"a":[1,2]}`, "/a/0", `9`, `{"a":[9,2]}`},
		{`{"a":[1,2]}`, "/a/2", `9`, `{"a":[1,2]}`}, // no element is created
		{`{"a":[1,2]}`, "/a/-", `9`, `{"a":[1,2]}`},
		{`{"a":[null]}`, "/a/0/v", `1`, `{"a":[{"v":1}]}`},
		{`{"a":[1]}`, "/a/0/v", `1`, `{"a":[1]}`},
		{`{"-":1}`, "/-", `2`, `{"-":2}`}, // "-" is a name like any in an object
		{`[1]`, "", `2`, `2`},
	}
	for _, tt := range tests {
		p, _ := ParsePointer(tt.pointer)
		doc, _ := parseJSON([]byte(tt.doc))
		val, _ := parseJSON([]byte(tt.val))
		if got := string(render(p.set(doc, val))); got != tt.want {
			t.Errorf("set(%s, %s, %s) = %s, want %s", tt.doc, tt.pointer, tt.val, got, tt.want)
		}
	}
}

// FuzzPointer: the resolver of parsed trees and the one of raw documents
// (Lookup's one-pass scan) name the same value, and set puts a value where find finds it.
func FuzzPointer(f *testing.F) {
	f.Add([]byte(`{"a":[{"v":7}],"b":{"c/d":[1,2]}}`), "/a/0/v")
	f.Add([]byte(`{"a":[{"v":7}],"b":{"c/d":[1,2]}}`), "/b/c~1d/1")
	f.Add([]byte(`[[0],{"0":1}]`), "/1/0")
	f.Add([]byte(`{"a":1,"a":2}`), "/a")
	f.Add([]byte(`{"x":[1]}`), "/x/-")
	f.Fuzz(func(t *testing.T, doc []byte, ptr string) {
		p, err := ParsePointer(ptr)
		if err != nil {
			return
		}
		tree, err := parseJSON(doc)
		if err != nil {
			return
		}
		v, ok := p.find(tree)
		trimmed := bytes.TrimSpace(doc)
		start, end, valid := p.resolve(trimmed)
		if !valid {
			t.Fatalf("resolve: %q is not valid", doc)
		}
		defer func(n int) { blockAfter = n }(blockAfter)
		blockAfter = 0 // every container skipped by blocks too
		if s, e, ok := p.resolve(trimmed); s != start || e != end || !ok {
			t.Fatalf("resolve by blocks: %d %d %v, token by token %d %d", s, e, ok, start, end)
		}
		if ok != (start >= 0) {
			t.Fatalf("find %v, resolve %d", ok, start)
		}
		if ok {
			raw := trimmed[start:end]
			rv, err := parseJSON(raw)
			if err != nil || !equal(v, rv) {
				t.Fatalf("find %s, resolve %s", render(v), raw)
			}
			marker := "marker"
			if got, ok := p.find(p.set(tree, marker)); !ok || got != marker {
				t.Fatalf("set then find: %v %v", got, ok)
			}
		}
	})
}
