package conflict

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultMaxDetail bounds a detail made from an upstream body, in bytes.
const DefaultMaxDetail = 512

// Upstream is an upstream response whose status is in normalize.
type Upstream struct {
	Status          int
	ContentType     string
	ContentEncoding string
	Body            []byte
	Truncated       bool   // Body was cut at max_body
	Base            string // problem_base; "" = DefaultProblemBase
	Instance        string // the request path, used when the upstream names no instance
	MaxDetail       int    // longest detail made from the body in bytes; 0 = DefaultMaxDetail
}

// NormalizeUpstream rewrites an upstream response body into a problem
// document (README "Problem documents"): its status member is always
// u.Status and the result is always one valid JSON object.
func NormalizeUpstream(u Upstream) []byte {
	return UpstreamProblem(u).JSON()
}

// UpstreamProblem is NormalizeUpstream before rendering, for callers that
// add members.
func UpstreamProblem(u Upstream) *Problem {
	maxDetail := u.MaxDetail
	if maxDetail <= 0 {
		maxDetail = DefaultMaxDetail
	}
	p := upstreamProblem(u, maxDetail)
	p.Status = u.Status
	if p.Instance == "" {
		p.Instance = u.Instance
	}
	return p
}

func upstreamProblem(u Upstream, maxDetail int) *Problem {
	synth := func(detail string) *Problem {
		if detail == "" {
			detail = statusDetail(u.Status)
		}
		return NewProblem(u.Base, KindUpstreamConflict, u.Status, detail)
	}
	body, cut, ok := decodeContent(u.Body, u.ContentEncoding)
	if !ok {
		return synth("")
	}
	truncated := u.Truncated || cut
	mt, charset := mediaType(u.ContentType)
	body = toUTF8(body, charset)
	if len(bytes.TrimSpace(body)) == 0 {
		return synth("")
	}

	form := bodyForm(mt, body)
	if form == formJSON || form == formProblem || form == formSniffedJSON {
		if !truncated {
			var compact bytes.Buffer
			compact.Grow(len(body))
			if json.Compact(&compact, body) == nil {
				return jsonProblem(u, compact.Bytes(), form == formProblem, maxDetail)
			}
		}
		if form != formSniffedJSON {
			// Cut or invalid JSON is not embedded: the message that came
			// before the damage, else the text itself.
			if d := findMessage(body).pick(maxDetail); d != "" {
				return synth(d)
			}
		}
	}
	if looksBinary(body) {
		return synth("")
	}
	if form == formMarkup {
		return synth(markupDetail(body, isXML(mt, body), u.Status, truncated, maxDetail))
	}
	return synth(textDetail(body, truncated, maxDetail))
}

// jsonProblem handles a complete, valid JSON body (compact).
func jsonProblem(u Upstream, compact []byte, declaredProblem bool, maxDetail int) *Problem {
	object := compact[0] == '{'
	var f *finder
	if !declaredProblem || !object {
		f = findMessage(compact)
	}
	if object && (declaredProblem || f.looksLikeProblem(u.Status)) {
		var p Problem
		if p.UnmarshalJSON(compact) == nil {
			// Kept as the upstream wrote it, missing members filled in.
			if p.Type == "" {
				p.Type = problemBase(u.Base) + string(KindUpstreamConflict)
			}
			if p.Title == "" {
				p.Title = http.StatusText(u.Status)
				if p.Title == "" {
					p.Title = KindUpstreamConflict.Title()
				}
			}
			if p.Detail == "" {
				p.Detail = statusDetail(u.Status)
			}
			return &p
		}
	}
	if f == nil {
		f = findMessage(compact)
	}
	detail := f.pick(maxDetail)
	if detail == "" {
		detail = statusDetail(u.Status)
	}
	p := NewProblem(u.Base, KindUpstreamConflict, u.Status, detail)
	p.setRaw("upstream", compact)
	return p
}

func problemBase(base string) string {
	if base == "" {
		return DefaultProblemBase
	}
	return base
}

// statusDetail is the detail of an upstream response that says nothing
// usable itself.
func statusDetail(status int) string {
	switch status {
	case http.StatusConflict:
		return "The request conflicts with the current state of the resource."
	case http.StatusPreconditionFailed:
		return "A precondition of the request was not met."
	case http.StatusPreconditionRequired:
		return "The upstream requires the request to be conditional."
	case http.StatusGone:
		return "The resource is gone."
	case http.StatusLocked:
		return "The resource is locked."
	case http.StatusFailedDependency:
		return "The request failed because a request it depends on failed."
	case http.StatusUnprocessableEntity:
		return "The upstream could not process the request's content."
	case http.StatusTooManyRequests:
		return "Too many requests; retry later."
	}
	if t := http.StatusText(status); t != "" {
		return "The upstream answered " + strconv.Itoa(status) + " " + t + "."
	}
	return "The upstream answered with status " + strconv.Itoa(status) + "."
}

// mediaType returns the lower-cased media type and charset of a
// Content-Type value, also when the value is slightly malformed.
func mediaType(ct string) (mt, charset string) {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil {
		return mt, strings.ToLower(params["charset"])
	}
	before, after, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(before))
	after = strings.ToLower(after)
	if _, v, ok := strings.Cut(after, "charset="); ok {
		v, _, _ = strings.Cut(v, ";")
		charset = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return mt, charset
}

type upstreamForm int

const (
	formText upstreamForm = iota
	formJSON
	formProblem
	formSniffedJSON
	formMarkup
)

// bodyForm decides how to read a body: by its declared media type, or by
// sniffing when the type says little (missing, text/plain, octet-stream).
func bodyForm(mt string, body []byte) upstreamForm {
	t := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(t) > 0 && t[0] == '<' && (mt == ContentType || mt == "application/json" || strings.HasSuffix(mt, "+json")):
		return formMarkup // an error page of a proxy in front of a JSON API
	case mt == ContentType:
		return formProblem
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		return formJSON
	case mt == "text/html" || mt == "application/xhtml+xml" || mt == "application/xml" ||
		mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
		return formMarkup
	case mt == "" || mt == "text/plain" || mt == "application/octet-stream":
		switch {
		case len(t) > 0 && (t[0] == '{' || t[0] == '['):
			return formSniffedJSON
		case len(t) > 0 && t[0] == '<' && strings.HasPrefix(http.DetectContentType(t), "text/html"):
			return formMarkup
		}
	}
	return formText
}

// looksBinary reports whether a (UTF-8) body is not text: a NUL, or more
// than one rune in ten that is a control character or a replaced invalid
// byte, among its first 8 KiB.
func looksBinary(body []byte) bool {
	if len(body) > 8<<10 {
		body = body[:8<<10]
	}
	runes, bad := 0, 0
	for len(body) > 0 {
		r, size := utf8.DecodeRune(body)
		body = body[size:]
		runes++
		switch {
		case r == 0:
			return true
		case r == '\t' || r == '\n' || r == '\r' || r == '\f':
		case r == utf8.RuneError || unicode.IsControl(r):
			bad++
		}
	}
	return bad*10 > runes
}

// cleanText collapses whitespace into single spaces and drops control and
// zero-width formatting characters.
func cleanText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
		case unicode.IsControl(r) || r == '\uFEFF' || r == '\u200B':
		default:
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteRune(r)
		}
	}
	return b.String()
}

const detailEllipsis = "…"

// boundText cuts s to at most n bytes at a rune boundary, marking the cut
// with an ellipsis.
func boundText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	room := n >= len(detailEllipsis)
	if room {
		n -= len(detailEllipsis)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	s = strings.TrimRight(s[:n], " ")
	if room {
		s += detailEllipsis
	}
	return s
}

// finishDetail bounds a detail made from a body, with an ellipsis also when the
// body itself was cut.
func finishDetail(s string, truncated bool, maxDetail int) string {
	if s != "" && truncated && !strings.HasSuffix(s, detailEllipsis) {
		s += detailEllipsis
	}
	return boundText(s, maxDetail)
}

// textDetail reads a plain-text body.
func textDetail(body []byte, truncated bool, maxDetail int) string {
	// Only the start can end up in the detail; cleaning the rest is waste.
	if n := 4*maxDetail + 64; len(body) > n {
		for n > 0 && !utf8.RuneStart(body[n]) {
			n--
		}
		body, truncated = body[:n], true
	}
	return finishDetail(cleanText(string(body)), truncated, maxDetail)
}
