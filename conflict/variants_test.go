package conflict

import (
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"
)

// Variants of one resource as the handler reports them: the JSON and the
// XML variant (ids as serve.go's variantOf makes them), each with versions.
func jsonV(v string) string { return VariantVersion("json", v) }
func xmlV(v string) string  { return VariantVersion("xml", v) }

func TestVariantVersion(t *testing.T) {
	for _, tt := range []struct{ id, v string }{{"abc", `"v1"`}, {"", `W/"x"`}, {"abc", ""}, {"a", "\x00"}} {
		id, v, ok := splitVariant(VariantVersion(tt.id, tt.v))
		if !ok || id != tt.id || v != tt.v {
			t.Errorf("splitVariant(VariantVersion(%q, %q)) = %q %q %v", tt.id, tt.v, id, v, ok)
		}
	}
	for _, plain := range []string{"", `"v1"`, "\x00", "\x00variant", "\x00variant\x00abc"} {
		if _, _, ok := splitVariant(plain); ok {
			t.Errorf("splitVariant(%q) took a plain version for a variant's", plain)
		}
		if got := (State{}).Observed(plain); got.Version != plain || got.Variants != nil {
			t.Errorf("Observed(%q) = %+v, want it as a plain version", plain, got)
		}
	}
}

func TestVariantStates(t *testing.T) {
	j1x1 := State{}.Observed(jsonV(`"j1"`)).Observed(xmlV(`"x1"`))
	put := func(status int, v string) WriteResult {
		return WriteResult{Method: http.MethodPut, Status: status, Version: v}
	}
	nine := State{}
	for i := range MaxVariants {
		nine = nine.Observed(VariantVersion(fmt.Sprint(i), fmt.Sprintf(`"v%d"`, i)))
	}
	tests := []struct {
		name string
		got  State
		want State
	}{
		{"reading two variants keeps both", j1x1,
			State{Version: `"j1"`, Live: true, Variants: []Variant{{"json", `"j1"`}, {"xml", `"x1"`}}}},
		{"re-reading a variant unchanged", j1x1.Observed(xmlV(`"x1"`)), j1x1},
		{"a new version of the JSON variant replaces only JSON's; the old one is superseded",
			j1x1.Observed(jsonV(`"j2"`)),
			State{Version: `"j2"`, Superseded: []string{"j1"}, Live: true, Variants: []Variant{{"json", `"j2"`}, {"xml", `"x1"`}}}},
		{"a new version of the XML variant keeps JSON's", j1x1.Observed(xmlV(`"x2"`)),
			State{Version: `"j1"`, Superseded: []string{"x1"}, Live: true, Variants: []Variant{{"json", `"j1"`}, {"xml", `"x2"`}}}},
		{"ABA: a variant back at an old version", j1x1.Observed(jsonV(`"j2"`)).Observed(jsonV(`W/"j1"`)),
			State{Version: `W/"j1"`, Superseded: []string{"j2"}, Live: true, Variants: []Variant{{"json", `W/"j1"`}, {"xml", `"x1"`}}}},
		{"a version still held by another variant is not superseded",
			State{}.Observed(jsonV(`"s"`)).Observed(xmlV(`"s"`)).Observed(jsonV(`"t"`)),
			State{Version: `"t"`, Live: true, Variants: []Variant{{"json", `"t"`}, {"xml", `"s"`}}}},
		{"a version learned without a variant stays current until a write",
			State{Version: `"w"`, Superseded: []string{"x0"}}.Observed(xmlV(`"x1"`)),
			State{Version: `"w"`, Superseded: []string{"x0"}, Live: true, Variants: []Variant{{"", `"w"`}, {"xml", `"x1"`}}}},
		{"a variant without a version is forgotten", j1x1.Observed(jsonV("")),
			State{Version: `"x1"`, Live: true, Variants: []Variant{{"xml", `"x1"`}}}},
		{"the last variant forgotten: unknown", j1x1.Observed(jsonV("")).Observed(xmlV("")), State{Live: true}},
		{"after an uncertain write the other variants are forgotten, not superseded",
			j1x1.AfterWrite([]string{`"j1"`}, put(502, "")).Observed(xmlV(`"x2"`)),
			State{Version: `"x2"`, Live: true, Variants: []Variant{{"xml", `"x2"`}}}},
		{"a tombstone read again", j1x1.Missing().Observed(xmlV(`"x2"`)),
			State{Version: `"x2"`, Superseded: []string{"j1", "x1"}, Live: true, Variants: []Variant{{"xml", `"x2"`}}}},
		{"one variant more than MaxVariants: unknown", nine.Observed(xmlV(`"x1"`)), State{Live: true}},
		{"a plain read: one representation again", j1x1.Observed(`"p"`), State{Version: `"p"`, Live: true}},
		{"a read without Vary of a current variant's version (a 304 omitting Vary)", j1x1.Observed(`"x1"`), j1x1},

		// A write supersedes every variant; its response's version is the only current one.
		{"write with a version", j1x1.AfterWrite([]string{`"j1"`}, put(200, `"w"`)),
			State{Version: `"w"`, Superseded: []string{"j1", "x1"}, Live: true}},
		{"write without a version", j1x1.AfterWrite([]string{`"j1"`}, put(204, "")),
			State{Superseded: []string{"j1", "x1"}, Live: true}},
		{"write based on a claimed tag", j1x1.AfterWrite([]string{`"j1"`, `"zz"`}, put(204, "")),
			State{Superseded: []string{"j1", "zz", "x1"}, Live: true}},
		{"write whose response repeats a variant's version", j1x1.AfterWrite([]string{`"j1"`}, put(200, `"x1"`)),
			State{Superseded: []string{"j1", "x1"}, Live: true}},
		{"write 3xx", j1x1.AfterWrite([]string{`"j1"`}, put(303, "")), State{Superseded: []string{"j1", "x1"}}},
		{"upstream 412", j1x1.AfterWrite([]string{`"j1"`}, put(412, `"x9"`)),
			State{Version: `"x9"`, Superseded: []string{"j1", "x1"}, Live: true}},
		{"delete", j1x1.AfterWrite([]string{`"j1"`}, WriteResult{Method: http.MethodDelete, Status: 204}),
			State{Deleted: true, Superseded: []string{"j1", "x1"}}},
		{"uncertain keeps the variants", j1x1.AfterWrite(nil, put(504, "")),
			State{Version: `"j1"`, Live: true, Uncertain: true, Variants: j1x1.Variants}},
		{"other 4xx changes nothing", j1x1.AfterWrite(nil, put(422, "")), j1x1},
		{"404 supersedes every variant", j1x1.Missing(), State{Deleted: true, Superseded: []string{"j1", "x1"}}},
		{"changed supersedes every variant", j1x1.Changed(), State{Superseded: []string{"j1", "x1"}}},
		{"forgotten supersedes none", j1x1.Forgotten(), State{}},
		{"a read after a write adds to the write's version",
			j1x1.AfterWrite([]string{`"j1"`}, put(200, `"w"`)).Observed(xmlV(`"x2"`)),
			State{Version: `"w"`, Superseded: []string{"j1", "x1"}, Live: true, Variants: []Variant{{"", `"w"`}, {"xml", `"x2"`}}}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, tt.got, tt.want)
		}
		if n := len(tt.got.Variants); n > 0 && tt.got.Version != tt.got.Variants[0].Version || n > MaxVariants {
			t.Errorf("%s: %+v breaks the invariant (Version is the first variant's, at most MaxVariants)", tt.name, tt.got)
		}
	}
	if len(nine.Variants) != MaxVariants {
		t.Errorf("MaxVariants variants: %+v", nine)
	}
}

// A transition never changes the state it starts from (stores hand the
// same State to concurrent readers).
func TestVariantStatesImmutable(t *testing.T) {
	s := State{Superseded: []string{"old"}}.Observed(jsonV(`"j1"`)).Observed(xmlV(`"x1"`))
	vars, sup := slices.Clone(s.Variants), slices.Clone(s.Superseded)
	_ = s.Observed(jsonV(`"j2"`))
	_ = s.Observed(VariantVersion("html", `"h1"`))
	_ = s.Observed(xmlV(""))
	_ = s.Observed(jsonV(`"old"`))
	_ = s.AfterWrite([]string{`"j1"`}, WriteResult{Method: http.MethodPut, Status: 200, Version: `"w"`})
	_ = s.Missing()
	if !slices.Equal(s.Variants, vars) || !slices.Equal(s.Superseded, sup) {
		t.Errorf("state changed in place: %+v", s)
	}
}

func TestDecideVariants(t *testing.T) {
	tags := func(v ...string) Precondition {
		return Precondition{Kind: PreconditionVersions, Versions: v, Source: "If-Match"}
	}
	put := func(v string) WriteResult { return WriteResult{Method: http.MethodPut, Status: 200, Version: v} }
	both := State{}.Observed(jsonV(`"j1"`)).Observed(xmlV(`"x1"`))
	written := both.AfterWrite([]string{`"j1"`}, put(`"j2"`))
	reread := written.Observed(xmlV(`"x2"`))
	jsonMoved := both.Observed(jsonV(`"j2"`))
	header := Policy{HeaderVersions: true}

	tests := []struct {
		name  string
		state State
		claim Precondition
		p     Policy
		kind  Kind
	}{
		{"both read: the JSON tag is current", both, tags(`"j1"`), Policy{}, ""},
		{"both read: the XML tag is current", both, tags(`"x1"`), Policy{}, ""},
		{"both read: the XML tag compressed", both, tags(`W/"x1-gzip"`), Policy{}, ""},
		{"both read: a tag of a variant not read is forwarded", both, tags(`"html1"`), Policy{}, ""},
		{"both read: If-None-Match *", both, Precondition{Kind: PreconditionAbsent}, Policy{}, KindAlreadyExists},
		{"after a write: the old JSON tag", written, tags(`"j1"`), Policy{}, KindStaleVersion},
		{"after a write: the old XML tag", written, tags(`"x1"`), Policy{}, KindStaleVersion},
		{"after a write: its response's tag", written, tags(`"j2"`), Policy{}, ""},
		{"after a write and a read of XML: the new XML tag", reread, tags(`"x2"`), Policy{}, ""},
		{"after a write and a read of XML: the write's tag", reread, tags(`"j2"`), Policy{}, ""},
		{"after a write and a read of XML: the old XML tag", reread, tags(`"x1"`), Policy{}, KindStaleVersion},
		{"after a write and a read of XML: old tags of both", reread, tags(`"x1"`, `"j1"`), Policy{}, KindStaleVersion},
		{"after a write and a read of XML: a tag never seen", reread, tags(`"h7"`), Policy{}, ""},
		{"JSON re-read with a new tag: XML's still current", jsonMoved, tags(`"x1"`), Policy{}, ""},
		{"JSON re-read with a new tag: the new JSON tag", jsonMoved, tags(`"j2"`), Policy{}, ""},
		{"JSON re-read with a new tag: the old JSON tag", jsonMoved, tags(`"j1"`), Policy{}, KindStaleVersion},
		{"version header: If-Match of a variant", both, tags(`"x1"`), header, ""},
		{"version header: If-Match superseded", jsonMoved, tags(`"j1"`), header, KindStaleVersion},
		{"version header: If-Match of the upstream", both, tags(`"etag"`), header, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := Decide(tt.state, tt.claim, tt.p); d.Kind != tt.kind {
				t.Errorf("Decide(%+v, %v) = %q, want %q", tt.state, tt.claim.Versions, d.Kind, tt.kind)
			}
		})
	}
}

func TestDecideVariantDates(t *testing.T) {
	d := func(h int) string { return time.Date(2024, 1, 1, h, 0, 0, 0, time.UTC).Format(http.TimeFormat) }
	at := func(h int) Precondition {
		return Precondition{Kind: PreconditionDate, Date: time.Date(2024, 1, 1, h, 0, 0, 0, time.UTC), Source: "If-Unmodified-Since"}
	}
	// The JSON variant read at 12, then again at 14; the XML variant at 10.
	s := State{}.Observed(jsonV(d(12))).Observed(xmlV(d(10))).Observed(jsonV(d(14)))
	for _, tt := range []struct {
		name  string
		claim Precondition
		kind  Kind
	}{
		{"the newest variant's date", at(14), ""},
		{"the other variant's date", at(10), ""},
		{"between them", at(11), ""},
		{"before every variant", at(9), KindStaleVersion},
	} {
		if got := Decide(s, tt.claim, Policy{Dates: true}).Kind; got != tt.kind {
			t.Errorf("%s: %q, want %q (state %+v)", tt.name, got, tt.kind, s)
		}
	}
}
