package conflict

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestParentPath(t *testing.T) {
	tests := []struct {
		method, path, want string
		ok                 bool
	}{
		{"PUT", "/folder/file.txt", "/folder", true},
		{"PUT", "/a/b/c", "/a/b", true},
		{"PATCH", "/articles/1", "/articles", true},
		{"PUT", "/file.txt", "", false}, // the root always exists
		{"PUT", "/", "", false},
		{"PUT", "", "", false},
		{"POST", "/articles", "/articles", true}, // a POST adds to the collection it is sent to
		{"POST", "/categories/2/posts", "/categories/2/posts", true},
		{"POST", "/", "", false},
	}
	for _, tt := range tests {
		got, ok := ParentPath(tt.method, tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParentPath(%s, %q) = %q, %v; want %q, %v", tt.method, tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCheckReferenceTemplate(t *testing.T) {
	tests := []struct {
		template string
		valid    bool
	}{
		{"/categories/{value}", true},
		{"/users/{value}/profile", true},
		{"/a/{value}/{value}", true},
		{"categories/{value}", false},
		{"/categories/", false},
		{"/categories/{value}?x=1", false},
		{"/categories/{value}#top", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := CheckReferenceTemplate(tt.template); (err == nil) != tt.valid {
			t.Errorf("CheckReferenceTemplate(%q) = %v, want valid %v", tt.template, err, tt.valid)
		}
	}
}

func TestExpandReference(t *testing.T) {
	tests := []struct {
		template, value, want string
		ok                    bool
	}{
		{"/categories/{value}", "7", "/categories/7", true},
		{"/categories/{value}", "news and views", "/categories/news and views", true},
		{"/a/{value}/b/{value}", "x", "/a/x/b/x", true},
		{"/categories/{value}", "", "", false},
		{"/categories/{value}", ".", "", false},
		{"/categories/{value}", "..", "", false}, // would name /: another resource
		{"/categories/{value}", "1/../../admin", "", false},
		{"/categories/{value}", "a\nb", "", false},
		{"/categories/{value}", "a\x7fb", "", false},
	}
	for _, tt := range tests {
		got, ok := ExpandReference(tt.template, tt.value)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ExpandReference(%q, %q) = %q, %v; want %q, %v", tt.template, tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

func TestReferenceValues(t *testing.T) {
	many := make([]string, 0, 40)
	want := make([]string, 0, MaxReferences)
	for i := range 40 {
		many = append(many, fmt.Sprint(i))
		if i < MaxReferences {
			want = append(want, fmt.Sprint(i))
		}
	}
	tests := []struct {
		doc, pointer string
		want         []string
		err          bool
	}{
		{`{"title":"x","categoryId":3}`, "/categoryId", []string{"3"}, false},
		{`{"categoryId":"news"}`, "/categoryId", []string{"news"}, false},
		{`{"categoryId":"a\u00e9"}`, "/categoryId", []string{"aé"}, false},
		{`{"categoryId":12345678901234567890}`, "/categoryId", []string{"12345678901234567890"}, false}, // not rounded
		{`{"meta":{"author":{"id":9}}}`, "/meta/author/id", []string{"9"}, false},
		{`{"tagIds":[1,"two",null,{"x":1},3]}`, "/tagIds", []string{"1", "two", "3"}, false},
		{`{"tags":[{"id":1},{"id":2}]}`, "/tags/1/id", []string{"2"}, false},
		{`{"tags":[{"id":1}]}`, "/tags/01/id", nil, false}, // RFC 6901: no leading zero
		{`{"tags":[{"id":1}]}`, "/tags/5/id", nil, false},
		{`{"a/b":1,"m~n":2}`, "/a~1b", []string{"1"}, false},
		{`{"categoryId":null}`, "/categoryId", nil, false},
		{`{"categoryId":true}`, "/categoryId", nil, false},
		{`{"categoryId":{"id":1}}`, "/categoryId", nil, false},
		{`{"title":"x"}`, "/categoryId", nil, false},
		{`"7"`, "/categoryId", nil, false},
		{`{"tagIds":[` + strings.Join(many, ",") + `]}`, "/tagIds", want, false},
		{`{"categoryId":`, "/categoryId", nil, true},
		{`{"categoryId":1} {"x":2}`, "/categoryId", nil, true},
		{`not json`, "/categoryId", nil, true},
	}
	for _, tt := range tests {
		p, err := ParsePointer(tt.pointer)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReferenceValues([]byte(tt.doc), p)
		if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ReferenceValues(%s, %s) = %q, %v; want %q, error %v", tt.doc, tt.pointer, got, err, tt.want, tt.err)
		}
	}
}

func TestLiveAndGone(t *testing.T) {
	tests := []struct {
		name       string
		s          State
		live, gone bool
	}{
		{"unknown", State{}, false, false},
		{"seen", State{Live: true}, true, false},
		{"known version, not seen live", State{Version: `"v1"`}, false, false},
		{"live with version", State{Version: `"v1"`, Live: true}, true, false},
		{"tombstone", State{Deleted: true}, false, true},
		{"uncertain tombstone", State{Deleted: true, Uncertain: true}, false, false},
		{"uncertain live", State{Version: `"v1"`, Live: true, Uncertain: true}, false, false},
		{"changed (MKCOL, MOVE)", State{Superseded: []string{"v1"}}, false, false},
	}
	for _, tt := range tests {
		if tt.s.IsLive() != tt.live || tt.s.IsGone() != tt.gone {
			t.Errorf("%s: IsLive %v IsGone %v, want %v %v", tt.name, tt.s.IsLive(), tt.s.IsGone(), tt.live, tt.gone)
		}
	}
}

func FuzzReferenceValues(f *testing.F) {
	for _, seed := range []string{`{"categoryId":3}`, `{"tagIds":[1,"a",null]}`, `[{"a":1}]`, `{"a":{"b":["x"]}}`, `{`} {
		f.Add([]byte(seed), "/categoryId")
	}
	f.Add([]byte(`{"a":{"b":["x"]}}`), "/a/b")
	f.Fuzz(func(t *testing.T, doc []byte, pointer string) {
		p, err := ParsePointer(pointer)
		if err != nil {
			return
		}
		values, err := ReferenceValues(doc, p)
		if err != nil && values != nil {
			t.Fatalf("values %q with error %v", values, err)
		}
		if len(values) > MaxReferences {
			t.Fatalf("%d values, bound %d", len(values), MaxReferences)
		}
	})
}
