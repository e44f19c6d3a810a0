package conflict

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

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
