package conflict

import (
	"net/http"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	v1, v2 := `"v1"`, `"v2"`
	current := State{Version: v2, Superseded: []string{"v1"}}
	onlySuperseded := State{Superseded: []string{"v1"}}
	tomb := State{Deleted: true, Superseded: []string{"v2"}}
	none := Precondition{}
	any := Precondition{Kind: PreconditionAny, Source: "If-Match"}
	absent := Precondition{Kind: PreconditionAbsent, Source: "If-None-Match"}
	tags := func(v ...string) Precondition {
		return Precondition{Kind: PreconditionVersions, Versions: v, Source: "If-Match"}
	}
	req := Policy{RequirePrecondition: true}
	strict := Policy{StaleStatus: http.StatusPreconditionFailed}
	header := Policy{HeaderVersions: true}

	tests := []struct {
		name   string
		state  State
		claim  Precondition
		policy Policy
		kind   Kind
		status int
	}{
		// unknown
		{"unknown, no claim", State{}, none, Policy{}, "", 0},
		{"unknown, no claim, require", State{}, none, req, KindPreconditionRequired, 428},
		{"unknown, If-Match *", State{}, any, Policy{}, "", 0},
		{"unknown, If-None-Match *", State{}, absent, Policy{}, "", 0},
		{"unknown, versions", State{}, tags(v1), Policy{}, "", 0},
		// current V
		{"current, no claim", current, none, Policy{}, "", 0},
		{"current, no claim, require", current, none, req, KindPreconditionRequired, 428},
		{"current, If-Match *", current, any, Policy{}, "", 0},
		{"current, If-None-Match *", current, absent, Policy{}, KindAlreadyExists, 412},
		{"current, matching", current, tags(v2), Policy{}, "", 0},
		{"current, matching in list", current, tags(`"x"`, v2), Policy{}, "", 0},
		{"current, matching gzip suffix", current, tags(`"v2-gzip"`), Policy{}, "", 0},
		{"current, matching weak", current, tags(`W/"v2"`), Policy{}, "", 0},
		{"current, stale", current, tags(v1), Policy{}, KindStaleVersion, 409},
		{"current, stale 412", current, tags(v1), strict, KindStaleVersion, 412},
		{"current, never seen tag", current, tags(`"zzz"`), Policy{}, KindStaleVersion, 409},
		// only superseded known
		{"superseded, no claim", onlySuperseded, none, Policy{}, "", 0},
		{"superseded, no claim, require", onlySuperseded, none, req, KindPreconditionRequired, 428},
		{"superseded, If-Match *", onlySuperseded, any, Policy{}, "", 0},
		{"superseded, If-None-Match *", onlySuperseded, absent, Policy{}, "", 0},
		{"superseded, only superseded tags", onlySuperseded, tags(v1, `"v1-gzip"`), Policy{}, KindStaleVersion, 409},
		{"superseded, other tag", onlySuperseded, tags(v2), Policy{}, "", 0},
		{"superseded, mixed", onlySuperseded, tags(v1, v2), Policy{}, "", 0},
		// tombstone
		{"deleted, no claim", tomb, none, Policy{}, "", 0},
		{"deleted, no claim, require", tomb, none, req, KindPreconditionRequired, 428},
		{"deleted, If-Match *", tomb, any, Policy{}, KindDeleted, 409},
		{"deleted, If-Match * 412", tomb, any, strict, KindDeleted, 412},
		{"deleted, If-None-Match *", tomb, absent, Policy{}, "", 0},
		{"deleted, versions", tomb, tags(v2), Policy{}, KindDeleted, 409},
		// a precondition in a form the source does not produce: never judged
		{"current, foreign tag", current, Precondition{Kind: PreconditionForeign, Versions: []string{v1}, Source: "If-Match"}, req, "", 0},
		{"deleted, foreign date", tomb, Precondition{Kind: PreconditionForeign, Source: "If-Unmodified-Since"}, Policy{}, "", 0},
		// version header: an If-Match that is not the version may be the upstream's ETag
		{"header, If-Match current", current, tags(v2), header, "", 0},
		{"header, If-Match other tag", current, tags(`"etag-of-upstream"`), header, "", 0},
		{"header, If-Match superseded", current, tags(v1), header, KindStaleVersion, 409},
		{"header, version header stale", current, Precondition{Kind: PreconditionVersions, Versions: []string{`"zzz"`}, Source: "X-Version"}, header, KindStaleVersion, 409},
		{"header, If-Match on tombstone", tomb, tags(v2), header, KindDeleted, 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.state, tt.claim, tt.policy)
			if d.Kind != tt.kind || d.Status != tt.status {
				t.Errorf("Decide = %q %d, want %q %d", d.Kind, d.Status, tt.kind, tt.status)
			}
			if d.Forward() != (tt.kind == "") {
				t.Errorf("Forward() = %v", d.Forward())
			}
		})
	}
}

func TestDecideDates(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	lm := func(t time.Time) string { return t.Format(http.TimeFormat) }
	date := func(t time.Time) Precondition {
		return Precondition{Kind: PreconditionDate, Date: t, Source: "If-Unmodified-Since"}
	}
	p := Policy{Dates: true}
	cur := State{Version: lm(t0)}
	tests := []struct {
		name  string
		state State
		claim Precondition
		kind  Kind
	}{
		{"same date", cur, date(t0), ""},
		{"later date", cur, date(t0.Add(time.Hour)), ""},
		{"earlier date", cur, date(t0.Add(-time.Second)), KindStaleVersion},
		{"superseded, read before the write", State{Superseded: []string{lm(t0)}}, date(t0), KindStaleVersion},
		{"superseded, read after", State{Superseded: []string{lm(t0)}}, date(t0.Add(time.Second)), ""},
		{"unknown", State{}, date(t0), ""},
	}
	for _, tt := range tests {
		if d := Decide(tt.state, tt.claim, p); d.Kind != tt.kind {
			t.Errorf("%s: Decide = %q, want %q", tt.name, d.Kind, tt.kind)
		}
	}
}

func TestParseClaim(t *testing.T) {
	h := func(kv ...string) http.Header {
		hdr := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hdr.Add(kv[i], kv[i+1])
		}
		return hdr
	}
	date := "Tue, 15 Nov 1994 12:45:26 GMT"
	tests := []struct {
		name   string
		hdr    http.Header
		scheme Scheme
		kind   PreconditionKind
		n      int
		bad    bool
	}{
		{"none", h(), SchemeETag, PreconditionNone, 0, false},
		{"if-match", h("If-Match", `"a", "b"`), SchemeETag, PreconditionVersions, 2, false},
		{"if-match lines", h("If-Match", `"a"`, "If-Match", `"b"`), SchemeETag, PreconditionVersions, 2, false},
		{"if-match star", h("If-Match", `*`), SchemeETag, PreconditionAny, 0, false},
		{"if-match broken", h("If-Match", `"a`), SchemeETag, PreconditionNone, 0, true},
		{"if-none-match star", h("If-None-Match", `*`), SchemeETag, PreconditionAbsent, 0, false},
		{"if-none-match tags are not a claim", h("If-None-Match", `"a"`), SchemeETag, PreconditionNone, 0, false},
		{"if-none-match broken", h("If-None-Match", `"a`), SchemeETag, PreconditionNone, 0, true},
		// A date is not a form etag produces: forwarded unjudged, never a 428.
		{"ius is foreign with etag", h("If-Unmodified-Since", date), SchemeETag, PreconditionForeign, 0, false},
		{"ius with last_modified", h("If-Unmodified-Since", date), SchemeLastModified, PreconditionDate, 0, false},
		{"ius broken", h("If-Unmodified-Since", "yesterday"), SchemeLastModified, PreconditionNone, 0, true},
		// An entity tag is not a form last_modified produces: the upstream's own ETag.
		{"if-match wins over ius", h("If-Match", `"a"`, "If-Unmodified-Since", date), SchemeLastModified, PreconditionForeign, 1, false},
		{"if-match star with last_modified", h("If-Match", `*`), SchemeLastModified, PreconditionAny, 0, false},
		{"version header", h("X-Version", `7`), SchemeHeader, PreconditionVersions, 1, false},
		{"version header empty", h("X-Version", ``), SchemeHeader, PreconditionNone, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParsePrecondition(tt.hdr, tt.scheme, "X-Version")
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want bad=%v", err, tt.bad)
			}
			if c.Kind != tt.kind || len(c.Versions) != tt.n {
				t.Errorf("claim = %+v, want kind %d with %d versions", c, tt.kind, tt.n)
			}
		})
	}
}

func FuzzParseClaim(f *testing.F) {
	f.Add(`"a", W/"b"`, `*`, "Tue, 15 Nov 1994 12:45:26 GMT")
	f.Add(`*`, ``, ``)
	f.Add(`"a`, `"b`, `x`)
	f.Fuzz(func(t *testing.T, ifMatch, ifNoneMatch, ius string) {
		h := http.Header{}
		if ifMatch != "" {
			h.Set("If-Match", ifMatch)
		}
		if ifNoneMatch != "" {
			h.Set("If-None-Match", ifNoneMatch)
		}
		if ius != "" {
			h.Set("If-Unmodified-Since", ius)
		}
		for _, s := range []Scheme{SchemeETag, SchemeLastModified} {
			c, err := ParsePrecondition(h, s, "")
			if err != nil {
				continue
			}
			// Any parsed claim can be decided on any state without panic.
			for _, st := range []State{{}, {Version: `"x"`}, {Deleted: true}, {Superseded: []string{"x"}}} {
				_ = Decide(st, c, Policy{Dates: s == SchemeLastModified})
			}
		}
	})
}

func BenchmarkDecide(b *testing.B) {
	s := State{Version: `"v2"`, Superseded: []string{"v1"}}
	h := http.Header{"If-Match": {`"v2-gzip"`}}
	b.ReportAllocs()
	for b.Loop() {
		c, _ := ParsePrecondition(h, SchemeETag, "")
		if !Decide(s, c, Policy{}).Forward() {
			b.Fatal("rejected")
		}
	}
}
