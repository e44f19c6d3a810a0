package conflict

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
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
	h := htmlScan{xml: xml, hr: -1, limit: 16 * maxDetail}
	h.run(body)
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
	xml     bool // every element separates text; no HTML semantics
	title   string
	blocks  []htmlBlock
	cur     []byte // text of the current block
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

// run collects the text of body into blocks. Text, tags, comments, raw text
// (script, style, title) and entities are the HTML tokenizer's; what
// separates, hides or titles text is decided here.
func (h *htmlScan) run(body []byte) {
	z := html.NewTokenizer(bytes.NewReader(body))
	z.AllowCDATA(true) // XML bodies wrap text in CDATA sections; their text is shown
	var (
		skip      string // the element whose content is hidden
		skipDepth int
		inTitle   bool
		title     []byte
	)
	for h.size <= h.limit {
		tt := z.Next()
		if tt == html.ErrorToken {
			break // io.EOF, or a tag cut off by the end of the body
		}
		if tt == html.CommentToken || tt == html.DoctypeToken {
			continue
		}
		if tt == html.TextToken {
			var text []byte
			if raw := z.Raw(); bytes.HasPrefix(raw, []byte("<![CDATA[")) {
				// CDATA is literal text; the tokenizer would decode entities in it.
				text = bytes.TrimSuffix(raw[len("<![CDATA["):], []byte("]]>"))
			} else {
				text = z.Text() // entities decoded, except in script and style
			}
			switch {
			case skip != "":
			case inTitle:
				title = append(title, text...)
			default:
				if room := h.limit - h.size + 1; len(text) > room {
					// A megabyte of text without a tag: keep what can be shown.
					n := room
					for n > 0 && !utf8.RuneStart(text[n]) {
						n--
					}
					text = text[:n]
					h.stopped = true
				}
				h.cur = append(h.cur, text...)
				h.size += len(text)
			}
			if h.stopped {
				break
			}
			continue
		}
		name, _ := z.TagName() // lower-cased; string(name) below does not allocate
		start := tt != html.EndTagToken
		if h.xml {
			z.NextIsNotRawText() // XML has no raw-text elements
			if start {
				h.flush(false, nil)
			} else {
				h.flush(false, name)
			}
			continue
		}
		switch {
		case skip != "":
			if string(name) == skip && tt == html.StartTagToken {
				skipDepth++
			} else if string(name) == skip && tt == html.EndTagToken {
				if skipDepth--; skipDepth == 0 {
					skip = ""
				}
			}
		case inTitle:
			if string(name) == "title" && !start {
				inTitle = false
				if h.title == "" {
					h.title = cleanText(string(title))
				}
			}
		case start && htmlSkipped[string(name)]:
			// "<svg/>" closes itself; "<select/>" does not (HTML ignores the
			// slash on other elements).
			if tt == html.StartTagToken || (string(name) != "svg" && string(name) != "math") {
				skip, skipDepth = string(name), 1
			}
		case start && string(name) == "title": // "<title/>" too: the tokenizer reads on to </title>
			inTitle = true
			title = title[:0]
		case string(name) == "hr":
			h.flush(false, nil)
			h.hr = len(h.blocks)
		case len(name) == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6':
			h.flush(!start, nil)
		case string(name) == "br":
			h.cur = append(h.cur, ' ')
		case htmlBlocks[string(name)]:
			h.flush(false, nil)
		}
	}
	if h.size > h.limit {
		h.stopped = true
	}
	if inTitle && h.title == "" {
		h.title = cleanText(string(title)) // a title cut off by the end of the body
	}
	h.flush(false, nil)
}

func (h *htmlScan) flush(heading bool, element []byte) {
	if len(h.cur) == 0 {
		return
	}
	text := cleanText(string(h.cur))
	h.cur = h.cur[:0]
	if text != "" {
		h.blocks = append(h.blocks, htmlBlock{text: text, heading: heading, element: string(element)})
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

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

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
