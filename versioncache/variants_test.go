package versioncache

import (
	"context"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/conflict"
)

// TestMemoryVariants: a store keeps the versions of a negotiated resource's
// variants (Observe with conflict.VariantVersion), a write supersedes them
// all, and a read that raced a write is not recorded.
func TestMemoryVariants(t *testing.T) {
	m, err := NewMemory(MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	testStoreVariants(t, m)
}

// testStoreVariants runs the variant scenario against any Store.
func testStoreVariants(t *testing.T, s Store) {
	ctx := context.Background()
	const key = "example.com/doc"
	jsonV := func(v string) string { return conflict.VariantVersion("json", v) }
	xmlV := func(v string) string { return conflict.VariantVersion("xml", v) }
	read := func(v string) {
		t.Helper()
		if ok, err := s.Observe(ctx, key, s.ReadStart(key), v, false); err != nil || !ok {
			t.Fatalf("Observe(%q) = %v, %v", v, ok, err)
		}
	}
	expect := func(what string, want conflict.State) {
		t.Helper()
		got, found, err := s.Get(ctx, key)
		if err != nil || !found || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Get = %+v %v %v, want %+v", what, got, found, err, want)
		}
	}
	decide := func(what string, st conflict.State, tag string, want conflict.Kind) {
		t.Helper()
		c := conflict.Precondition{Kind: conflict.PreconditionVersions, Versions: []string{tag}, Source: "If-Match"}
		if got := conflict.Decide(st, c, conflict.Policy{}).Kind; got != want {
			t.Errorf("%s: If-Match %s decided %q, want %q", what, tag, got, want)
		}
	}

	read(jsonV(`"j1"`))
	read(xmlV(`"x1"`))
	read(xmlV(`"x1"`)) // unchanged
	both := conflict.State{Version: `"j1"`, Live: true, Variants: []conflict.Variant{{ID: "json", Version: `"j1"`}, {ID: "xml", Version: `"x1"`}}}
	expect("both variants read", both)

	// A read that started before the write and ends after it is not recorded.
	late := s.ReadStart(key)
	lease, snap, err := s.Claim(ctx, key, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	decide("claimed state", snap.State, `"x1"`, "")
	decide("claimed state", snap.State, `"j1"`, "")
	based := []string{snap.State.Version}
	if err := lease.Commit(ctx, snap.State.AfterWrite(based, conflict.WriteResult{Method: http.MethodPut, Status: 200, Version: `"w"`})); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Observe(ctx, key, late, xmlV(`"x1"`), false); err != nil || ok {
		t.Fatalf("a read that raced the write was recorded: %v %v", ok, err)
	}
	written := conflict.State{Version: `"w"`, Superseded: []string{"j1", "x1"}, Live: true}
	expect("after the write", written)
	decide("after the write", written, `"x1"`, conflict.KindStaleVersion)

	read(xmlV(`"x2"`))
	read(jsonV(`"j2"`))
	read(jsonV(`"j3"`)) // a new JSON version replaces only JSON's
	st, _, _ := s.Get(ctx, key)
	want := conflict.State{Version: `"w"`, Superseded: []string{"j2", "j1", "x1"}, Live: true,
		Variants: []conflict.Variant{{Version: `"w"`}, {ID: "xml", Version: `"x2"`}, {ID: "json", Version: `"j3"`}}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("after reads of both variants: %+v, want %+v", st, want)
	}
	decide("after the reads", st, `"x2"`, "")
	decide("after the reads", st, `"j3"`, "")
	decide("after the reads", st, `"j2"`, conflict.KindStaleVersion)
	decide("after the reads", st, `"x1"`, conflict.KindStaleVersion)
}
