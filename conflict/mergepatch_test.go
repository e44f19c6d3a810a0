package conflict

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// decodeJSON reads a JSON text as encoding/json does (numbers as their
// literal), for comparing documents regardless of member order and space.
func decodeJSON(data []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return nil, false
	}
	return v, true
}

// nullInArray reports whether a patch holds a null inside an array: RFC
// 7396 section 2 replaces a target with an array patch as it is, nulls
// included; jsonpatch.MergePatch removes null members of objects inside
// it, so the two are not compared there.
func nullInArray(v any, inArray bool) bool {
	switch v := v.(type) {
	case nil:
		return inArray
	case []any:
		for _, e := range v {
			if nullInArray(e, true) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if e == nil && !inArray {
				continue
			}
			if nullInArray(e, inArray) {
				return true
			}
		}
	}
	return false
}

// duplicateNames reports whether an object in data names a member twice.
// RFC 8259 section 4 leaves what that means to the parser (Apply takes the
// last, as encoding/json does; jsonpatch keeps both in part), so the two are
// not compared there.
func duplicateNames(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	type level struct {
		names map[string]bool
		key   bool // the next token of this object is a name
	}
	var stack []*level
	for {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.key {
			if name, ok := tok.(string); ok {
				if top.names[name] {
					return true
				}
				top.names[name] = true
				top.key = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &level{names: map[string]bool{}, key: true})
			continue
		case json.Delim('['):
			stack = append(stack, &level{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].names != nil {
			stack[len(stack)-1].key = true // a value ended: a name comes next
		}
	}
}

// FuzzMergePatch: Apply agrees with github.com/evanphx/json-patch, an
// independent RFC 7396 implementation, wherever both apply the patch.
func FuzzMergePatch(f *testing.F) {
	for _, tt := range [...]struct{ target, patch string }{
		{`{"a":"b"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"a":null}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`},
		{`{"a":"foo"}`, `"bar"`},
		{`{"e":null}`, `{"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`},
		{`{"a":1,"b":{"c":[1,2]}}`, `{"b":{"c":null,"d":{"e":null,"f":1.50}},"g":-0}`},
		{`{"n":1e2}`, `{"n":{"x":null}}`},
	} {
		f.Add([]byte(tt.target), []byte(tt.patch))
	}
	f.Fuzz(func(t *testing.T, target, patch []byte) {
		if nesting := bytes.Count(target, []byte("[")) + bytes.Count(target, []byte("{")) +
			bytes.Count(patch, []byte("[")) + bytes.Count(patch, []byte("{")); nesting > 200 {
			return // jsonpatch takes time quadratic in the depth
		}
		ours, err := Apply(target, patch)
		if err != nil {
			return
		}
		theirs, err := jsonpatch.MergePatch(target, patch)
		if err != nil {
			return
		}
		p, _ := decodeJSON(patch)
		if nullInArray(p, false) || duplicateNames(target) || duplicateNames(patch) {
			return
		}
		o, ok1 := decodeJSON(ours)
		th, ok2 := decodeJSON(theirs)
		if !ok1 || !ok2 {
			t.Fatalf("not JSON: ours %q, theirs %q", ours, theirs)
		}
		if !reflect.DeepEqual(o, th) {
			t.Fatalf("Apply(%s, %s) = %s; jsonpatch.MergePatch = %s", target, patch, ours, theirs)
		}
	})
}

// TestApplyWhereJSONPatchDiffers: where FuzzMergePatch does not compare,
// Apply follows RFC 7396 section 2 (jsonpatch v5.9.11 answers otherwise).
func TestApplyWhereJSONPatchDiffers(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		// An array is a value: its objects keep their null members
		// (jsonpatch: {"a":[{}]}).
		{`{}`, `{"a":[{"b":null}]}`, `{"a":[{"b":null}]}`},
		{`[1]`, `[{"a":null}]`, `[{"a":null}]`},
		{`{"a":1}`, `{"a":{"b":[null,{"c":null}]}}`, `{"a":{"b":[null,{"c":null}]}}`},
		// A duplicated name: the last value counts, as in encoding/json, so
		// the member is removed (jsonpatch: {"0":{"":null}}).
		{`{}`, `{"0":{"":"","":null}}`, `{"0":{}}`},
	}
	for _, tt := range tests {
		got, err := Apply([]byte(tt.target), []byte(tt.patch))
		if err != nil || string(got) != tt.want {
			t.Errorf("Apply(%s, %s) = %s, %v; want %s", tt.target, tt.patch, got, err, tt.want)
		}
	}
}
