package conflict

import (
	"bytes"
	"html"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

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
