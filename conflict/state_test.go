package conflict

import (
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"testing"
)

func TestStateTransitions(t *testing.T) {
	v1 := State{Version: `"v1"`}
	live := State{Version: `"v1"`, Live: true}
	tests := []struct {
		name string
		got  State
		want State
	}{
		{"read learns", State{}.Observed(`"v1"`), State{Version: `"v1"`, Live: true}},
		{"read of a superseded version (ABA) clears it", State{Superseded: []string{"v1", "v0"}}.Observed(`W/"v1-gzip"`),
			State{Version: `W/"v1-gzip"`, Superseded: []string{"v0"}, Live: true}},
		{"read clears tombstone and uncertainty", State{Deleted: true, Uncertain: true}.Observed(`"v3"`), State{Version: `"v3"`, Live: true}},
		{"read without a version is live", State{}.Observed(""), State{Live: true}},
		{"404 makes a tombstone", v1.Missing(), State{Deleted: true, Superseded: []string{"v1"}}},
		{"404 ends liveness", live.Missing(), State{Deleted: true, Superseded: []string{"v1"}}},
		{"write with version", v1.AfterWrite([]string{`"v1"`}, WriteResult{Method: "PUT", Status: 200, Version: `"v2"`}),
			State{Version: `"v2"`, Superseded: []string{"v1"}, Live: true}},
		{"write without version", v1.AfterWrite([]string{`"v1"`}, WriteResult{Method: "PUT", Status: 204}),
			State{Superseded: []string{"v1"}, Live: true}},
		{"write based on claimed versions", State{}.AfterWrite([]string{`"a"`, `"b"`}, WriteResult{Method: "PATCH", Status: 200}),
			State{Superseded: []string{"b", "a"}, Live: true}},
		{"3xx write does not show existence", State{}.AfterWrite(nil, WriteResult{Method: "PUT", Status: 303}), State{}},
		{"delete", v1.AfterWrite([]string{`"v1"`}, WriteResult{Method: "DELETE", Status: 204}),
			State{Deleted: true, Superseded: []string{"v1"}}},
		{"delete ends liveness", live.AfterWrite(nil, WriteResult{Method: "DELETE", Status: 200}),
			State{Deleted: true, Superseded: []string{"v1"}}},
		{"upstream 409 keeps liveness", live.AfterWrite(nil, WriteResult{Method: "PUT", Status: 409, Version: `"v9"`}),
			State{Version: `"v9"`, Superseded: []string{"v1"}, Live: true}},
		{"uncertain keeps liveness", live.AfterWrite(nil, WriteResult{Method: "DELETE", Status: 504}),
			State{Version: `"v1"`, Live: true, Uncertain: true}},
		{"upstream 409 with version", v1.AfterWrite(nil, WriteResult{Method: "PUT", Status: 409, Version: `"v9"`}),
			State{Version: `"v9"`, Superseded: []string{"v1"}}},
		{"upstream 412 without version", v1.AfterWrite(nil, WriteResult{Method: "PUT", Status: 412}),
			State{Superseded: []string{"v1"}}},
		{"5xx is uncertain", v1.AfterWrite([]string{`"v1"`}, WriteResult{Method: "PUT", Status: 502}),
			State{Version: `"v1"`, Uncertain: true}},
		{"no response is uncertain", v1.AfterWrite([]string{`"v1"`}, WriteResult{Method: "PUT"}),
			State{Version: `"v1"`, Uncertain: true}},
		{"client gone is uncertain", v1.AfterWrite(nil, WriteResult{Method: "PUT", Status: 499}),
			State{Version: `"v1"`, Uncertain: true}},
		{"other 4xx changes nothing", v1.AfterWrite(nil, WriteResult{Method: "PUT", Status: http.StatusBadRequest}), v1},
		{"write whose response repeats the based-on version", v1.AfterWrite([]string{`"v1"`}, WriteResult{Method: "PUT", Status: 200, Version: `W/"v1"`}),
			State{Superseded: []string{"v1"}, Live: true}},
		{"changed by another method", v1.Changed(), State{Superseded: []string{"v1"}}},
		{"changed is not live (MOVE source)", live.Changed(), State{Superseded: []string{"v1"}}},
		{"other 4xx keeps liveness", live.AfterWrite(nil, WriteResult{Method: "PUT", Status: 422}), live},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
}

func TestSupersededIsBounded(t *testing.T) {
	s := State{}
	for i := range 3 * MaxSuperseded {
		s = s.AfterWrite([]string{string(rune('a' + i))}, WriteResult{Method: "PUT", Status: 204})
	}
	if len(s.Superseded) != MaxSuperseded {
		t.Fatalf("len = %d, want %d", len(s.Superseded), MaxSuperseded)
	}
	if s.Superseded[0] != string(rune('a'+3*MaxSuperseded-1)) {
		t.Errorf("newest first: got %q", s.Superseded[0])
	}
}

func TestTransitionsDoNotShareMemory(t *testing.T) {
	a := State{Superseded: []string{"x", "y"}}
	_ = a.Observed(`"x"`)
	_ = a.AfterWrite([]string{`"z"`}, WriteResult{Method: "PUT", Status: 204})
	if !reflect.DeepEqual(a.Superseded, []string{"x", "y"}) {
		t.Fatalf("a stored state was modified: %q", a.Superseded)
	}
}

// TestSupersedingMatchesSteps: superseding, which AfterWrite uses to build
// the new list in one allocation, is the result of the steps it stands for:
// supersede each based version, then the old current one, take the new
// current one out, keep the newest MaxSuperseded.
func TestSupersedingMatchesSteps(t *testing.T) {
	steps := func(list []string, current string, based []string, last string) []string {
		all := slices.Clone(list)
		for _, v := range append(slices.Clone(based), last) {
			if v == "" {
				continue
			}
			c := Canonical(v)
			all = append([]string{c}, slices.DeleteFunc(all, func(x string) bool { return x == c })...)
		}
		if current != "" {
			all = slices.DeleteFunc(all, func(x string) bool { return x == Canonical(current) })
		}
		if len(all) > MaxSuperseded {
			all = all[:MaxSuperseded]
		}
		if len(all) == 0 {
			return nil
		}
		return all
	}
	tags := []string{"", `"a"`, `"b"`, `W/"c"`, `"d-gzip"`, "d", `"e"`, `"f"`, `"g"`, `"h"`, `"i"`, `"j"`}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return tags[rng.IntN(len(tags))] }
	for range 20000 {
		var list []string
		for range rng.IntN(MaxSuperseded + 1) {
			if v := pick(); v != "" && !slices.Contains(list, Canonical(v)) {
				list = append(list, Canonical(v))
			}
		}
		based := make([]string, rng.IntN(4))
		for i := range based {
			based[i] = pick()
		}
		current, last := pick(), pick()
		listCopy, basedCopy := slices.Clone(list), slices.Clone(based)
		got := superseding(list, Canonical(current), based, last)
		if want := steps(list, current, based, last); !reflect.DeepEqual(got, want) {
			t.Fatalf("superseding(%q, %q, %q, %q) = %q, want %q", list, current, based, last, got, want)
		}
		if !reflect.DeepEqual(list, listCopy) || !reflect.DeepEqual(based, basedCopy) {
			t.Fatal("superseding modified its arguments")
		}
	}
}
