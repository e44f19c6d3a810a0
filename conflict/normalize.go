package conflict

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/json"
	"html"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// DefaultMaxDetail bounds a detail made from an upstream body, in bytes.
const DefaultMaxDetail = 512

// minDecodeLimit is the least a compressed upstream body may inflate to;
// beyond that the limit is 4 times the compressed size (a zip bomb must not
// blow memory).
const minDecodeLimit = 1 << 20

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
// document (SPEC "Problem documents"): its status member is always
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

// decodeContent undoes the content codings of body (RFC 9110 section
// 8.4), the last applied first. Output is bounded: cut reports that it hit
// the bound or that the compressed stream ended early. ok is false for a
// coding that cannot be decoded.
func decodeContent(body []byte, encoding string) (out []byte, cut, ok bool) {
	if strings.TrimSpace(encoding) == "" {
		return body, false, true
	}
	limit := max(4*len(body), minDecodeLimit)
	codings := strings.Split(encoding, ",")
	if len(codings) > 3 {
		return nil, false, false // nobody stacks codings; a bomb might
	}
	for i := len(codings) - 1; i >= 0; i-- {
		var r io.Reader
		switch strings.ToLower(strings.TrimSpace(codings[i])) {
		case "", "identity":
			continue
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, false, false
			}
			r = zr
		case "deflate":
			// RFC 9110 says zlib; some servers send raw deflate.
			if zr, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
				r = zr
			} else {
				r = flate.NewReader(bytes.NewReader(body))
			}
		case "zstd":
			zr, err := zstd.NewReader(bytes.NewReader(body),
				zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderMaxMemory(64<<20))
			if err != nil {
				return nil, false, false
			}
			defer zr.Close()
			r = zr
		default: // br (not in Caddy's dependencies), compress, unknown
			return nil, false, false
		}
		dec, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		switch {
		case len(dec) > limit:
			dec, cut = dec[:limit], true
		case err != nil && len(dec) == 0:
			return nil, false, false
		case err != nil:
			cut = true
		}
		body = dec
	}
	return body, cut, true
}

// decodable reports whether decodeContent can undo a content coding.
func decodable(coding string) bool {
	for _, c := range [...]string{"gzip", "x-gzip", "deflate", "zstd", "identity"} {
		if strings.EqualFold(coding, c) {
			return true
		}
	}
	return false
}

// DecodableAcceptEncoding narrows an Accept-Encoding request header (RFC
// 9110 section 12.5.3) to the codings NormalizeUpstream can decode, so
// that an upstream never answers in one it cannot read (br, compress, or
// any through "*"). It returns the narrowed value ("" means: send no
// Accept-Encoding) and whether it differs from v; an unchanged value costs
// no allocation.
func DecodableAcceptEncoding(v string) (string, bool) {
	rest, dropped := v, false
	for rest != "" {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		coding, _, _ := strings.Cut(item, ";")
		if coding = strings.TrimSpace(coding); coding != "" && !decodable(coding) {
			dropped = true
			break
		}
	}
	if !dropped {
		return v, false
	}
	var b strings.Builder
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		coding, _, _ := strings.Cut(item, ";")
		if coding = strings.TrimSpace(coding); coding == "" || !decodable(coding) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(item)
	}
	return b.String(), true
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

// windows1252 maps the bytes 0x80-0x9F; the other bytes of ISO-8859-1 are
// their own code points. The WHATWG Encoding Standard reads "iso-8859-1"
// and "us-ascii" labels as windows-1252, as browsers do.
var windows1252 = [32]rune{
	'\u20AC', '\u0081', '\u201A', '\u0192', '\u201E', '\u2026', '\u2020', '\u2021',
	'\u02C6', '\u2030', '\u0160', '\u2039', '\u0152', '\u008D', '\u017D', '\u008F',
	'\u0090', '\u2018', '\u2019', '\u201C', '\u201D', '\u2022', '\u2013', '\u2014',
	'\u02DC', '\u2122', '\u0161', '\u203A', '\u0153', '\u009D', '\u017E', '\u0178',
}

func isLatin1(charset string) bool {
	switch charset {
	case "iso-8859-1", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "iso-ir-100",
		"latin1", "l1", "cp819", "ibm819", "csisolatin1", "windows-1252", "cp1252", "x-cp1252",
		"us-ascii", "ascii", "ansi_x3.4-1968":
		return true
	}
	return false
}

// toUTF8 transcodes body to valid UTF-8: Latin-1/windows-1252 and UTF-16
// are decoded, anything else is read as UTF-8 with invalid bytes replaced
// by U+FFFD. A byte order mark is removed.
func toUTF8(body []byte, charset string) []byte {
	switch {
	case bytes.HasPrefix(body, []byte{0xEF, 0xBB, 0xBF}):
		body = body[3:]
	case bytes.HasPrefix(body, []byte{0xFE, 0xFF}):
		return fromUTF16(body[2:], false)
	case bytes.HasPrefix(body, []byte{0xFF, 0xFE}):
		return fromUTF16(body[2:], true)
	case charset == "utf-16" || charset == "utf-16be":
		return fromUTF16(body, false)
	case charset == "utf-16le":
		return fromUTF16(body, true)
	case isLatin1(charset) && !utf8.Valid(body):
		// Valid UTF-8 labelled Latin-1 is a misconfigured server (a default
		// charset), not Latin-1 text: that rarely forms UTF-8 sequences.
		return fromWindows1252(body)
	}
	if utf8.Valid(body) {
		return body
	}
	return bytes.ToValidUTF8(body, []byte("\uFFFD"))
}

func fromWindows1252(body []byte) []byte {
	n := 0
	for _, c := range body {
		if c >= 0x80 {
			n++
		}
	}
	if n == 0 {
		return body
	}
	out := make([]byte, 0, len(body)+2*n)
	for _, c := range body {
		switch {
		case c < 0x80:
			out = append(out, c)
		case c < 0xA0:
			out = utf8.AppendRune(out, windows1252[c-0x80])
		default:
			out = utf8.AppendRune(out, rune(c))
		}
	}
	return out
}

func fromUTF16(body []byte, little bool) []byte {
	units := make([]uint16, len(body)/2)
	for i := range units {
		if little {
			units[i] = uint16(body[2*i]) | uint16(body[2*i+1])<<8
		} else {
			units[i] = uint16(body[2*i])<<8 | uint16(body[2*i+1])
		}
	}
	out := make([]byte, 0, len(units))
	for _, r := range utf16.Decode(units) {
		out = utf8.AppendRune(out, r)
	}
	return out
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

// isXML tells an XML body (an S3 or Azure error, say) from HTML.
func isXML(mt string, body []byte) bool {
	switch mt {
	case "text/html", "application/xhtml+xml", "":
		return false
	}
	if !strings.Contains(mt, "xml") {
		return false // sniffed from text/plain or octet-stream: HTML
	}
	return !strings.HasPrefix(http.DetectContentType(bytes.TrimLeft(body, " \t\r\n")), "text/html")
}

// markupDetail reads an HTML body as the text a person would see of it,
// without the server signature of stock error pages; or an XML body as its
// message element.
func markupDetail(body []byte, xml bool, status int, truncated bool, maxDetail int) string {
	h := htmlScan{s: string(body), xml: xml, hr: -1, limit: 16 * maxDetail}
	h.run()
	d := ""
	if xml {
		d = h.xmlDetail()
	} else {
		d = h.detail(status)
	}
	return finishDetail(d, truncated || h.stopped, maxDetail)
}

type htmlBlock struct {
	text    string
	heading bool
	element string // XML: the element the text closes, lower-cased
}

type htmlScan struct {
	s       string
	xml     bool // every element separates text; no HTML semantics
	title   string
	blocks  []htmlBlock
	cur     []byte // text of the current block, entities not yet decoded
	hr      int    // number of blocks before the last <hr>, -1 if none
	size    int    // text collected so far
	limit   int    // stop collecting beyond this
	stopped bool   // the scan stopped before the end
}

// skipped elements never show text; address holds Apache's signature.
var htmlSkipped = map[string]bool{
	"script": true, "style": true, "template": true, "noscript": true, "svg": true,
	"math": true, "iframe": true, "object": true, "textarea": true, "select": true, "address": true,
}

// htmlBlocks break text into separate pieces.
var htmlBlocks = map[string]bool{
	"html": true, "head": true, "body": true, "p": true, "div": true, "center": true, "section": true,
	"article": true, "main": true, "header": true, "footer": true, "nav": true, "aside": true,
	"ul": true, "ol": true, "li": true, "dl": true, "dt": true, "dd": true, "table": true,
	"thead": true, "tbody": true, "tfoot": true, "tr": true, "td": true, "th": true, "caption": true,
	"pre": true, "blockquote": true, "form": true, "fieldset": true, "legend": true, "figure": true,
	"figcaption": true, "details": true, "summary": true,
}

func (h *htmlScan) run() {
	s := h.s
	for i := 0; i < len(s); {
		if h.size > h.limit {
			h.stopped = true
			break
		}
		if s[i] != '<' {
			j := strings.IndexByte(s[i:], '<')
			if j < 0 {
				j = len(s) - i
			}
			if room := h.limit - h.size + 1; j > room {
				// A megabyte of text without a tag: keep what can be shown.
				for j = room; j > 0 && !utf8.RuneStart(s[i+j]); j-- {
				}
				h.stopped = true
			}
			h.cur = append(h.cur, s[i:i+j]...)
			h.size += j
			i += j
			if h.stopped {
				break
			}
			continue
		}
		rest := s[i:]
		if strings.HasPrefix(rest, "<!--") {
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				break
			}
			i += 4 + end + 3
			continue
		}
		if strings.HasPrefix(rest, "<![CDATA[") {
			end := strings.Index(rest, "]]>")
			if end < 0 {
				end = len(rest)
			}
			text := rest[9:end]
			h.cur = append(h.cur, html.EscapeString(text)...) // flush unescapes
			h.size += len(text)
			i += min(end+3, len(rest))
			continue
		}
		if len(rest) > 1 && (rest[1] == '!' || rest[1] == '?') {
			end := strings.IndexByte(rest, '>')
			if end < 0 {
				break
			}
			i += end + 1
			continue
		}
		name, closing, end := parseTag(rest)
		if name == "" {
			// "a < b": a literal less-than sign.
			h.cur = append(h.cur, '<')
			h.size++
			i++
			continue
		}
		if end < 0 {
			break // a tag cut off by the end of the body
		}
		i += end
		if h.xml {
			if closing {
				h.flush(false, name)
			} else {
				h.flush(false, "")
			}
			continue
		}
		switch {
		case !closing && htmlSkipped[name]:
			i = skipElement(s, i, name)
		case !closing && name == "title":
			j := skipElement(s, i, name)
			text := s[i:j]
			if k := lastIndexFold(text, "</title"); k >= 0 {
				text = text[:k]
			}
			if h.title == "" {
				h.title = cleanText(html.UnescapeString(text))
			}
			i = j
		case name == "hr":
			h.flush(false, "")
			h.hr = len(h.blocks)
		case len(name) == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6':
			h.flush(closing, "")
		case name == "br":
			h.cur = append(h.cur, ' ')
		case htmlBlocks[name]:
			h.flush(false, "")
		}
	}
	h.flush(false, "")
}

func (h *htmlScan) flush(heading bool, element string) {
	if len(h.cur) == 0 {
		return
	}
	text := cleanText(html.UnescapeString(string(h.cur)))
	h.cur = h.cur[:0]
	if text != "" {
		h.blocks = append(h.blocks, htmlBlock{text: text, heading: heading, element: element})
	}
}

// xmlMessages are the element names that carry a message in XML error
// bodies (S3: <Error><Code/><Message/></Error>), in order of preference.
var xmlMessages = [...]string{"message", "reason", "detail", "description", "error", "title", "msg", "code"}

// xmlDetail picks the message element of an XML body, a sentence before a
// code, else joins all its text.
func (h *htmlScan) xmlDetail() string {
	first := ""
	for _, name := range xmlMessages {
		for _, b := range h.blocks {
			if b.element != name {
				continue
			}
			if isSentence(b.text) {
				return b.text
			}
			if first == "" {
				first = b.text
			}
		}
	}
	if first != "" {
		return first
	}
	return joinBlocks(h.blocks)
}

// detail joins the visible blocks, minus a server signature after the last
// <hr> and minus headings that only repeat the status ("409 Conflict"),
// which the problem's status and title already say.
func (h *htmlScan) detail(status int) string {
	blocks := h.blocks
	if h.hr >= 0 && h.hr < len(blocks) && allSignatures(blocks[h.hr:]) {
		blocks = blocks[:h.hr]
	}
	var keep []htmlBlock
	statusLine := ""
	for _, b := range blocks {
		if statusOnly(b.text, status) {
			if statusLine == "" {
				statusLine = b.text
			}
			continue
		}
		keep = append(keep, b)
	}
	if len(keep) == 0 {
		if statusLine != "" {
			return statusLine
		}
		return h.title
	}
	return joinBlocks(keep)
}

// joinBlocks writes blocks as one line: a heading ends with a colon, a block
// without final punctuation with a period.
func joinBlocks(keep []htmlBlock) string {
	var b strings.Builder
	for i, k := range keep {
		if i > 0 {
			prev := keep[i-1]
			last, _ := utf8.DecodeLastRuneInString(prev.text)
			switch {
			case strings.ContainsRune(".!?:;,…", last):
				b.WriteByte(' ')
			case prev.heading:
				b.WriteString(": ")
			default:
				b.WriteString(". ")
			}
		}
		b.WriteString(k.text)
	}
	return b.String()
}

// parseTag reads the tag at the start of s ("<name ...>" or "</name>"):
// name is lower-cased, "" when s does not start a tag; end is the index
// after '>', -1 when the tag does not end.
func parseTag(s string) (name string, closing bool, end int) {
	i := 1
	if i < len(s) && s[i] == '/' {
		closing = true
		i++
	}
	start := i
	for i < len(s) && (isASCIILetter(s[i]) || (i > start && (s[i] >= '0' && s[i] <= '9' || s[i] == '-' || s[i] == ':'))) {
		i++
	}
	if i == start {
		return "", false, 0
	}
	name = strings.ToLower(s[start:i])
	var quote byte
	afterEq := false
	for ; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '>':
			return name, closing, i + 1
		case (c == '"' || c == '\'') && afterEq:
			quote = c
		}
		if c == '=' {
			afterEq = true
		} else if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			afterEq = false
		}
	}
	return name, closing, -1
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// skipElement returns the index after the end tag of name, searching from
// i; len(s) when there is none.
func skipElement(s string, i int, name string) int {
	for {
		k := strings.Index(s[i:], "</")
		if k < 0 {
			return len(s)
		}
		i += k + 2
		if len(s)-i >= len(name) && strings.EqualFold(s[i:i+len(name)], name) {
			if e := strings.IndexByte(s[i:], '>'); e >= 0 {
				return i + e + 1
			}
			return len(s)
		}
	}
}

func lastIndexFold(s, sub string) int {
	for i := len(s) - len(sub); i >= 0; i-- {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// statusOnly reports whether text only repeats the status: "409 Conflict",
// "Conflict", "Error 409", "HTTP Status 409 – Conflict".
func statusOnly(text string, status int) bool {
	t := strings.ReplaceAll(strings.ToLower(text), strconv.Itoa(status), " ")
	var words []string
	for _, w := range strings.FieldsFunc(t, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	}) {
		switch w {
		case "http", "error", "status", "code":
			continue
		}
		words = append(words, w)
	}
	return len(words) == 0 || strings.Join(words, " ") == strings.ToLower(http.StatusText(status))
}

// serverNames are products whose name alone makes a signature line.
var serverNames = map[string]bool{
	"nginx": true, "openresty": true, "apache": true, "caddy": true, "lighttpd": true, "tengine": true,
	"cloudflare": true, "envoy": true, "varnish": true, "haproxy": true, "squid": true, "jetty": true,
	"microsoft-iis": true, "iis": true, "litespeed": true, "gunicorn": true, "werkzeug": true, "tomcat": true,
}

// allSignatures reports whether blocks (those after the last <hr>) are
// short lines naming server software, as stock error pages end.
func allSignatures(blocks []htmlBlock) bool {
	for _, b := range blocks {
		if len(b.text) > 120 || !isSignature(b.text) {
			return false
		}
	}
	return true
}

// isSignature: a product token with a version ("nginx/1.22.1",
// "Apache/2.4.62 (Debian) Server at ...") or a bare server name.
func isSignature(t string) bool {
	words := strings.Fields(t)
	for _, w := range words {
		if name, ver, ok := strings.Cut(w, "/"); ok && name != "" && isASCIILetter(name[0]) &&
			ver != "" && ver[0] >= '0' && ver[0] <= '9' {
			return true
		}
	}
	if len(words) <= 3 {
		for _, w := range words {
			if serverNames[strings.ToLower(strings.Trim(w, ".,;:()"))] {
				return true
			}
		}
	}
	return false
}

// messagePaths are where JSON APIs put a human-readable message, in order of
// preference (keys lower-cased, "0" the first element of an array).
var messagePaths = [...]string{
	"message",                   // GitHub, Kubernetes Status, Spring Boot, most APIs
	"reason",                    // CouchDB
	"detail",                    // Django REST framework
	"error.message",             // Google, Stripe, Azure
	"error.reason",              // Elasticsearch
	"error.detail",              //
	"error.root_cause.0.reason", // Elasticsearch
	"errors.0.message",          // GraphQL, GitLab
	"errors.0.detail",           // JSON:API
	"errors.0.title",            // JSON:API
	"errors",                    // Rails {"errors":{"field":["message"]}} or a list of strings
	"error",                     // CouchDB, Express, OAuth
	"title",
	"msg",
	"error_description", // OAuth 2.0 (RFC 6749 section 5.2)
	"description",
	"errormessage",
	"error_message",
	"error.type", // codes, as a last resort
	"error.code",
	"code",
}

const errorsSlot = 10 // index of "errors" in messagePaths

var (
	messageIndex = map[string]int{}
	// messagePrefixes holds every prefix of a message path: the parts of a
	// document the finder descends into.
	messagePrefixes = map[string]bool{"type": true, "status": true}
)

func init() {
	for i, p := range messagePaths {
		messageIndex[p] = i
		for j := range p {
			if p[j] == '.' {
				messagePrefixes[p[:j]] = true
			}
		}
		messagePrefixes[p] = true
	}
	if messagePaths[errorsSlot] != "errors" {
		panic("conflict: errorsSlot out of date")
	}
}

// finder looks for the human-readable message of a JSON document. It scans
// the bytes itself, so a truncated or damaged document still yields what
// came before the damage (encoding/json's Decoder stops at the first error
// and allocates on every token).
type finder struct {
	b       []byte
	i       int
	found   [len(messagePaths)]string
	list    []string // the "errors" slot's messages
	root    string   // the document is a string
	hasType bool
	status  float64
	path    []byte // scratch for child paths
}

// maxMessageDepth bounds the nesting the finder descends into (only arrays
// at the root can nest without end; the message paths are shallow).
const maxMessageDepth = 8

func findMessage(body []byte) *finder {
	f := &finder{b: body}
	f.value("", 0) // a false return ends the walk; what was found stays
	return f
}

func (f *finder) space() {
	for f.i < len(f.b) {
		switch f.b[f.i] {
		case ' ', '\t', '\n', '\r':
			f.i++
		default:
			return
		}
	}
}

// next skips white space and reports the next byte, 0 at the end.
func (f *finder) next() byte {
	f.space()
	if f.i >= len(f.b) {
		return 0
	}
	return f.b[f.i]
}

// value reads the value at f.i, found at path; it reports false when the
// document ends or breaks.
func (f *finder) value(path string, depth int) bool {
	switch c := f.next(); {
	case depth > maxMessageDepth:
		return f.skip()
	case c == '{':
		return f.object(path, depth)
	case c == '[':
		return f.array(path, depth)
	case c == '"':
		raw, ok := f.str()
		if ok {
			if s, ok := rawJSONString(raw); ok {
				f.record(path, s)
			}
		}
		return ok
	default:
		lit := f.literal()
		if path == "status" {
			if n, err := strconv.ParseFloat(string(lit), 64); err == nil {
				f.status = n
			}
		}
		return len(lit) > 0
	}
}

func (f *finder) object(path string, depth int) bool {
	f.i++ // {
	if f.next() == '}' {
		f.i++
		return true
	}
	for {
		if f.next() != '"' {
			return false
		}
		key, ok := f.str()
		if !ok || f.next() != ':' {
			return false
		}
		f.i++
		switch {
		case path == "errors":
			ok = f.railsField(key)
		default:
			if child, walk := f.child(path, key); walk {
				ok = f.value(child, depth+1)
			} else {
				ok = f.skip()
			}
		}
		if !ok {
			return false
		}
		switch f.next() {
		case ',':
			f.i++
		case '}':
			f.i++
			return true
		default:
			return false
		}
	}
}

// child returns path + "." + key (key lower-cased) when the finder
// descends there; it allocates only then.
func (f *finder) child(path string, raw []byte) (string, bool) {
	f.path = append(f.path[:0], path...)
	if path != "" {
		f.path = append(f.path, '.')
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		f.path = append(f.path, c)
	}
	if !messagePrefixes[string(f.path)] {
		return "", false
	}
	return string(f.path), true
}

func (f *finder) array(path string, depth int) bool {
	f.i++ // [
	if f.next() == ']' {
		f.i++
		return true
	}
	for i := 0; ; i++ {
		var ok bool
		switch {
		case i == 0 && path == "":
			ok = f.value("", depth+1) // a list of errors: the first speaks for all
		case i == 0 && messagePrefixes[path+".0"]:
			ok = f.value(path+".0", depth+1)
		case path == "errors" && f.next() == '"':
			var raw []byte
			if raw, ok = f.str(); ok {
				if s, good := rawJSONString(raw); good {
					f.addList(s)
				}
			}
		default:
			ok = f.skip()
		}
		if !ok {
			return false
		}
		switch f.next() {
		case ',':
			f.i++
		case ']':
			f.i++
			return true
		default:
			return false
		}
	}
}

// str reads a JSON string at f.i and returns it with its quotes.
func (f *finder) str() ([]byte, bool) {
	start := f.i
	for i := f.i + 1; i < len(f.b); i++ {
		switch f.b[i] {
		case '\\':
			i++
		case '"':
			f.i = i + 1
			return f.b[start:f.i], true
		}
	}
	f.i = len(f.b)
	return nil, false
}

// literal reads a number, true, false or null.
func (f *finder) literal() []byte {
	start := f.i
	for f.i < len(f.b) {
		c := f.b[f.i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E') {
			break
		}
		f.i++
	}
	return f.b[start:f.i]
}

// skip passes over one value of any depth without recursion.
func (f *finder) skip() bool {
	depth := 0
	for {
		switch c := f.next(); c {
		case 0:
			return false
		case '"':
			if _, ok := f.str(); !ok {
				return false
			}
		case '{', '[':
			f.i++
			depth++
			continue
		case '}', ']':
			f.i++
			depth--
		case ',', ':':
			if depth == 0 {
				return false
			}
			f.i++
			continue
		default:
			if len(f.literal()) == 0 {
				return false
			}
		}
		if depth <= 0 {
			return depth == 0
		}
	}
}

// railsField reads one member of a Rails-style errors object: field name
// to message or list of messages, shown as Rails' full messages are.
func (f *finder) railsField(key []byte) bool {
	field, _ := rawJSONString(key)
	name := strings.NewReplacer("_", " ", ".", " ").Replace(field)
	if name == "base" {
		name = ""
	}
	if r, n := utf8.DecodeRuneInString(name); n > 0 {
		name = string(unicode.ToUpper(r)) + name[n:]
	}
	add := func(raw []byte) {
		s, _ := rawJSONString(raw)
		if name != "" && s != "" {
			s = name + " " + s
		}
		f.addList(s)
	}
	switch f.next() {
	case '"':
		raw, ok := f.str()
		if ok {
			add(raw)
		}
		return ok
	case '[':
		f.i++
		if f.next() == ']' {
			f.i++
			return true
		}
		for {
			if f.next() == '"' {
				raw, ok := f.str()
				if !ok {
					return false
				}
				add(raw)
			} else if !f.skip() {
				return false
			}
			switch f.next() {
			case ',':
				f.i++
			case ']':
				f.i++
				return true
			default:
				return false
			}
		}
	}
	return f.skip()
}

func (f *finder) addList(s string) {
	if s = strings.TrimSpace(s); s != "" && len(f.list) < 10 {
		f.list = append(f.list, s)
	}
}

func (f *finder) record(path, s string) {
	switch path {
	case "":
		f.root = s
		return
	case "errors.0":
		f.addList(s)
		return
	case "type":
		f.hasType = true
	}
	if i, ok := messageIndex[path]; ok && f.found[i] == "" {
		f.found[i] = s
	}
}

// looksLikeProblem reports whether a JSON object sent as plain JSON is an
// RFC 9457 (or 7807) problem document all the same.
func (f *finder) looksLikeProblem(status int) bool {
	return f.found[messageIndex["title"]] != "" && f.status == float64(status) &&
		(f.hasType || f.found[messageIndex["detail"]] != "")
}

// pick returns the most descriptive message found: the first, in the order
// of messagePaths, that reads as a sentence, else the first at all.
func (f *finder) pick(maxDetail int) string {
	if len(f.list) > 0 {
		f.found[errorsSlot] = strings.Join(f.list, "; ")
	}
	first := cleanText(f.root)
	if first != "" {
		return boundText(first, maxDetail)
	}
	for _, s := range f.found {
		s = cleanText(s)
		if s == "" {
			continue
		}
		if isSentence(s) {
			return boundText(s, maxDetail)
		}
		if first == "" {
			first = s
		}
	}
	return boundText(first, maxDetail)
}

// isSentence tells a message ("Document update conflict.") from a code
// ("conflict", "version_conflict_engine_exception").
func isSentence(s string) bool {
	return strings.ContainsRune(s, ' ') || strings.ContainsAny(s[len(s)-1:], ".!?")
}
