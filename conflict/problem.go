package conflict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ContentType is the media type of every problem document the proxy sends
// (RFC 9457 section 3).
const ContentType = "application/problem+json"

// DefaultProblemBase prefixes the kind in a problem's "type" URI when
// problem_base is not configured. base+kind is the kind's section of
// docs/problems.md: a type URI that can be dereferenced should lead to its
// documentation (RFC 9457 section 3.1.1).
const DefaultProblemBase = "https://github.com/caddy-conflict/caddy-conflict/blob/main/docs/problems.md#"

// Kind names why a request was rejected or rewritten; the problem's "type"
// is the problem base followed by the kind.
type Kind string

// The kinds of problem documents (README "Problem documents").
const (
	KindStaleVersion         Kind = "stale-version"
	KindDeleted              Kind = "deleted"
	KindAlreadyExists        Kind = "already-exists"
	KindPreconditionRequired Kind = "precondition-required"
	KindWriteInProgress      Kind = "write-in-progress"
	KindInvalidPrecondition  Kind = "invalid-precondition"
	KindUpstreamConflict     Kind = "upstream-conflict"
	KindParentMissing        Kind = "parent-missing"
	KindNotEmpty             Kind = "not-empty"
	KindReferenceMissing     Kind = "reference-missing"
	KindUpstreamUnavailable  Kind = "upstream-unavailable"
	KindStoreUnavailable     Kind = "store-unavailable"
	KindBodyTooLarge         Kind = "body-too-large"
	KindInvalidBody          Kind = "invalid-body"
)

type kindInfo struct {
	title  string
	status int
	detail string
}

var kinds = map[Kind]kindInfo{
	KindStaleVersion:         {"Stale version", http.StatusConflict, "The resource has changed since the version this request is based on."},
	KindDeleted:              {"Resource deleted", http.StatusConflict, "The resource has been deleted."},
	KindAlreadyExists:        {"Resource already exists", http.StatusPreconditionFailed, "The resource already exists."},
	KindPreconditionRequired: {"Precondition required", http.StatusPreconditionRequired, "This request must be conditional: send If-Match with the version it is based on."},
	KindWriteInProgress:      {"Write in progress", http.StatusConflict, "Another write to this resource is still in progress; retry later."},
	KindInvalidPrecondition:  {"Invalid precondition", http.StatusBadRequest, "A precondition of this request cannot be parsed."},
	KindUpstreamConflict:     {"Upstream conflict", http.StatusConflict, "The request conflicts with the current state of the resource."},
	KindParentMissing:        {"Parent missing", http.StatusConflict, "The parent of this resource does not exist."},
	KindNotEmpty:             {"Resource not empty", http.StatusConflict, "The resource still has children."},
	KindReferenceMissing:     {"Referenced resource missing", http.StatusConflict, "A resource this request refers to does not exist."},
	KindUpstreamUnavailable:  {"Upstream unavailable", http.StatusBadGateway, "The current version of the resource could not be read from the upstream."},
	KindStoreUnavailable:     {"Version store unavailable", http.StatusServiceUnavailable, "The version store cannot be reached; retry later."},
	KindBodyTooLarge:         {"Request body too large", http.StatusRequestEntityTooLarge, "The request body is too large to be checked."},
	KindInvalidBody:          {"Invalid request body", http.StatusBadRequest, "The request body cannot be parsed."},
}

// Title is the short human-readable summary of the kind, the problem's
// "title" (RFC 9457 section 3.1.3).
func (k Kind) Title() string {
	if i, ok := kinds[k]; ok {
		return i.title
	}
	// An unknown kind still gets a readable title: "foo-bar" -> "Foo bar".
	t := strings.ReplaceAll(string(k), "-", " ")
	if t == "" {
		return "Problem"
	}
	r, n := utf8.DecodeRuneInString(t)
	return strings.ToUpper(string(r)) + t[n:]
}

// Status is the HTTP status a problem of this kind gets by default (for
// stale-version and deleted: stale_status's default, 409).
func (k Kind) Status() int {
	if i, ok := kinds[k]; ok {
		return i.status
	}
	return http.StatusConflict
}

func (k Kind) defaultDetail() string {
	if i, ok := kinds[k]; ok {
		return i.detail
	}
	return k.Title() + "."
}

// Member is an extension member of a problem document (RFC 9457 section
// 3.2). Value is compact, valid JSON.
type Member struct {
	Name  string
	Value json.RawMessage
}

// Problem is an RFC 9457 problem document. The JSON tags name the members;
// JSON (also used by MarshalJSON) renders them in this order: type, title,
// status, detail, instance, the fields below, then the extension members
// in the order they were first set.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`

	Resource         string   `json:"resource,omitempty"`
	CurrentVersion   string   `json:"current_version,omitempty"`
	ProvidedVersions []string `json:"provided_versions,omitempty"`
	Related          []string `json:"related,omitempty"`

	extra []Member
}

// NewProblem returns the problem of kind with type base+kind (base ""
// means DefaultProblemBase). status 0 means the kind's default status and
// detail "" the kind's default detail.
func NewProblem(base string, kind Kind, status int, detail string) *Problem {
	if base == "" {
		base = DefaultProblemBase
	}
	if status == 0 {
		status = kind.Status()
	}
	if detail == "" {
		detail = kind.defaultDetail()
	}
	return &Problem{Type: base + string(kind), Title: kind.Title(), Status: status, Detail: detail}
}

// standardMember reports whether name is one of the members RFC 9457
// defines; those are fields of Problem, never extension members.
func standardMember(name string) bool {
	switch name {
	case "type", "title", "status", "detail", "instance":
		return true
	}
	return false
}

// Set adds (or replaces) the extension member name with value encoded as
// JSON.
func (p *Problem) Set(name string, value any) error {
	raw, err := json.Marshal(value)
	if err != nil {
		return fmt.Errorf("conflict: problem member %q: %w", name, err)
	}
	return p.SetRaw(name, raw)
}

// SetRaw adds (or replaces) the extension member name with a JSON text,
// embedded as is (compacted).
func (p *Problem) SetRaw(name string, raw []byte) error {
	if standardMember(name) {
		return fmt.Errorf("conflict: problem member %q is a standard member, not an extension", name)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("conflict: problem member %q: %w", name, err)
	}
	if !utf8.Valid(buf.Bytes()) {
		return fmt.Errorf("conflict: problem member %q: invalid UTF-8", name)
	}
	p.setRaw(name, buf.Bytes())
	return nil
}

// setRaw stores raw, which the caller guarantees to be compact valid JSON.
func (p *Problem) setRaw(name string, raw []byte) {
	for i := range p.extra {
		if p.extra[i].Name == name {
			p.extra[i].Value = raw
			return
		}
	}
	p.extra = append(p.extra, Member{Name: name, Value: raw})
}

// Member returns the extension member name.
func (p *Problem) Member(name string) (json.RawMessage, bool) {
	for _, m := range p.extra {
		if m.Name == name {
			return m.Value, true
		}
	}
	return nil, false
}

// Extra returns the extension members in the order they are rendered. The
// slice must not be modified.
func (p *Problem) Extra() []Member { return p.extra }

// JSON renders the problem as one compact JSON object, without a trailing
// newline. An empty Type renders as "about:blank" and an empty Title as the
// status text (RFC 9457 section 4.2.1), so the result always has type,
// title and status.
func (p *Problem) JSON() []byte {
	// The member names and punctuation take at most 150 bytes; each string
	// adds its quotes and a comma, and escapes some room.
	n := 150 + len(p.Type) + len(p.Title) + len(p.Detail) + len(p.Instance) +
		len(p.Resource) + len(p.CurrentVersion)
	for _, v := range p.ProvidedVersions {
		n += len(v) + 3
	}
	for _, v := range p.Related {
		n += len(v) + 3
	}
	for _, m := range p.extra {
		n += len(m.Name) + len(m.Value) + 4
	}
	b := make([]byte, 0, n+n/16)

	typ, title := p.Type, p.Title
	if typ == "" {
		typ = "about:blank"
	}
	if title == "" {
		title = http.StatusText(p.Status)
	}
	b = append(b, `{"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"title":`...)
	b = appendString(b, title)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(p.Status), 10)
	b = appendStringMember(b, "detail", p.Detail)
	b = appendStringMember(b, "instance", p.Instance)
	b = appendStringMember(b, "resource", p.Resource)
	b = appendStringMember(b, "current_version", p.CurrentVersion)
	b = appendListMember(b, "provided_versions", p.ProvidedVersions)
	b = appendListMember(b, "related", p.Related)
	for _, m := range p.extra {
		if p.shadowed(m.Name) {
			continue
		}
		b = append(b, ',')
		b = appendString(b, m.Name)
		b = append(b, ':')
		b = append(b, m.Value...)
	}
	return append(b, '}')
}

// shadowed reports whether an extension member would repeat a member that
// is rendered from a field (UnmarshalJSON keeps a "resource" that is not a
// string as an extension member, for instance).
func (p *Problem) shadowed(name string) bool {
	switch name {
	case "resource":
		return p.Resource != ""
	case "current_version":
		return p.CurrentVersion != ""
	case "provided_versions":
		return len(p.ProvidedVersions) > 0
	case "related":
		return len(p.Related) > 0
	}
	return false
}

// MarshalJSON implements json.Marshaler with JSON.
func (p *Problem) MarshalJSON() ([]byte, error) { return p.JSON(), nil }

// UnmarshalJSON reads a problem document. Standard members of the wrong
// type are ignored (RFC 9457 section 3.1); every other member is kept, in
// order, as an extension member.
func (p *Problem) UnmarshalJSON(data []byte) error {
	if !utf8.Valid(data) {
		data = bytes.ToValidUTF8(data, []byte("\uFFFD"))
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return fmt.Errorf("conflict: problem document: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("conflict: problem document is not a JSON object")
	}
	*p = Problem{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("conflict: problem document: %w", err)
		}
		name, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("conflict: problem document: %w", err)
		}
		p.setMember(name, raw)
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("conflict: problem document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("conflict: problem document: data after the object")
	}
	return nil
}

func (p *Problem) setMember(name string, raw json.RawMessage) {
	switch name {
	case "type":
		p.Type, _ = rawJSONString(raw)
	case "title":
		p.Title, _ = rawJSONString(raw)
	case "detail":
		p.Detail, _ = rawJSONString(raw)
	case "instance":
		p.Instance, _ = rawJSONString(raw)
	case "status":
		p.Status = 0
		if n, err := strconv.Atoi(string(raw)); err == nil {
			p.Status = n
		}
	case "resource", "current_version":
		s, ok := rawJSONString(raw)
		if !ok {
			p.setRaw(name, raw)
		} else if name == "resource" {
			p.Resource = s
		} else {
			p.CurrentVersion = s
		}
	case "provided_versions", "related":
		var l []string
		if json.Unmarshal(raw, &l) != nil {
			p.setRaw(name, raw)
		} else if name == "related" {
			p.Related = l
		} else {
			p.ProvidedVersions = l
		}
	default:
		p.setRaw(name, raw)
	}
}

// jsonString decodes raw if it is a JSON string.
func rawJSONString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if plain(raw[1 : len(raw)-1]) {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// plain reports whether the content of a JSON string needs no decoding.
func plain(b []byte) bool {
	ascii := true
	for _, c := range b {
		switch {
		case c < 0x20 || c == '"' || c == '\\':
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return ascii || utf8.Valid(b)
}

func appendStringMember(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendListMember(b []byte, name string, l []string) []byte {
	if len(l) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '[')
	for i, v := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

const jsonHex = "0123456789abcdef"

// jsonSafe marks the bytes that stand for themselves in a JSON string.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string (RFC 8259 section 7). Invalid
// UTF-8 becomes U+FFFD, as encoding/json does; U+2028 and U+2029 are
// escaped so the document can also be embedded in JavaScript. Unlike
// encoding/json, <, > and & are kept: a problem document is not HTML.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', jsonHex[c>>4], jsonHex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', jsonHex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
