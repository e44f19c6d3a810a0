// Package gjson compares conflict.Lookup with github.com/tidwall/gjson on the
// version field of a JSON document, as the issue "Cost in every mode" asked.
// It is a module of its own so that gjson stays out of caddy-conflict's
// go.mod:
//
//	cd bench/gjson && go test -bench . -benchmem -count 6
package gjson

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// doc is conflict's benchmark document: the version field last, after
// size bytes of objects.
func doc(size int) []byte {
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

// path is a gjson path for p: each reference token escaped.
func path(p conflict.Pointer) string {
	parts := make([]string, len(p))
	for i, t := range p {
		parts[i] = gjson.Escape(t)
	}
	return strings.Join(parts, ".")
}

// lookupGJSON is Lookup with gjson: validate (gjson does not), then get.
func lookupGJSON(d []byte, p conflict.Pointer) (string, bool) {
	if !gjson.ValidBytes(d) {
		return "", false
	}
	r := gjson.GetBytes(d, path(p))
	switch r.Type {
	case gjson.String:
		return r.Str, true
	case gjson.Number, gjson.True, gjson.False:
		return r.Raw, true
	}
	return "", false
}

// TestWhereGJSONDiffers lists the documents on which gjson names another
// value than Lookup (which agrees with encoding/json, FuzzLookupReference).
func TestWhereGJSONDiffers(t *testing.T) {
	for _, tt := range []struct{ doc, ptr string }{
		{`{"a":1,"a":2}`, "/a"},            // duplicates: encoding/json keeps the last, gjson the first
		{`{"v\u0065rsion":3}`, "/version"}, // an escaped name
		{`{"a":1}x`, "/a"},                 // garbage after the value, without ValidBytes
		{`{"a":[1,2]}`, "/a/1"},
		{`{"a.b":7}`, "/a.b"},
		{`{"a":{"#":7}}`, "/a/#"},
	} {
		p, _ := conflict.ParsePointer(tt.ptr)
		want, werr := conflict.Lookup([]byte(tt.doc), p)
		got, ok := lookupGJSON([]byte(tt.doc), p)
		raw := gjson.GetBytes([]byte(tt.doc), path(p))
		if (werr == nil) != ok || got != want {
			t.Logf("%s %s: Lookup %q, %v; gjson (validated) %q, %v; gjson alone %q", tt.doc, tt.ptr, want, werr, got, ok, raw.Raw)
		}
	}
}

var version = conflict.Pointer{"version"}

func BenchmarkLookup64KiB(b *testing.B) {
	d := doc(64 << 10)
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if v, err := conflict.Lookup(d, version); v != "42" || err != nil {
			b.Fatal(v, err)
		}
	}
}

// BenchmarkGJSONGet64KiB is gjson alone: no validation, so not a
// replacement by itself.
func BenchmarkGJSONGet64KiB(b *testing.B) {
	d := doc(64 << 10)
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if r := gjson.GetBytes(d, path(version)); r.Raw != "42" {
			b.Fatal(r.Raw)
		}
	}
}

// BenchmarkGJSONValidGet64KiB is what Lookup does, with gjson.
func BenchmarkGJSONValidGet64KiB(b *testing.B) {
	d := doc(64 << 10)
	b.SetBytes(int64(len(d)))
	b.ReportAllocs()
	for b.Loop() {
		if v, ok := lookupGJSON(d, version); v != "42" || !ok {
			b.Fatal(v)
		}
	}
}
