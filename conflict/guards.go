package conflict

import (
	"errors"
	"net/http"
	"strings"
)

// MaxRelated bounds the resources a guard rejection names in `related`.
const MaxRelated = 10

// MaxReferences bounds the values one `guard reference` takes from a body
// (an array of ids); the ones beyond it are not checked.
const MaxReferences = 32

// ParentPath is the path of the resource a write to p must find existing:
// for a POST, p itself (a POST adds to the collection it is sent to); for
// other methods p minus its last segment. p is a cleaned path. The root
// always exists and is never returned: ok is false when the parent would be
// "/" (APIs often answer 404 for it).
func ParentPath(method, p string) (parent string, ok bool) {
	if method == http.MethodPost {
		if p == "/" || p == "" {
			return "", false
		}
		return p, true
	}
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "", false
	}
	return p[:i], true
}

// ValueToken is what a reference template's {value} stands for.
const ValueToken = "{value}"

// CheckReferenceTemplate reports what is wrong with a `guard reference`
// template: it must be a path on the same host that uses {value}.
func CheckReferenceTemplate(t string) error {
	switch {
	case !strings.HasPrefix(t, "/"):
		return errors.New("the template must be a path starting with /, such as /categories/{value}")
	case !strings.Contains(t, ValueToken):
		return errors.New("the template must contain {value}")
	case strings.ContainsAny(t, "?#"):
		return errors.New("the template is a path: no query or fragment")
	}
	return nil
}

// ExpandReference puts value into template. A value that cannot be one
// path segment ("", ".", "..", or containing "/" or a control character)
// names no resource: ok is false.
func ExpandReference(template, value string) (p string, ok bool) {
	if value == "" || value == "." || value == ".." {
		return "", false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '/' || c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	return strings.ReplaceAll(template, ValueToken, value), true
}

// ReferenceValues returns the values at p in the JSON document doc that
// name other resources: a string's text or a number's literal, or each of
// those in an array (at most MaxReferences). null, a missing member, an
// object, or a boolean name nothing. A document that is not JSON gives an
// error.
func ReferenceValues(doc []byte, p Pointer) ([]string, error) {
	v, err := parseJSON(doc)
	if err != nil {
		return nil, err
	}
	v, ok := p.find(v)
	if !ok {
		return nil, nil
	}
	if arr, ok := v.([]any); ok {
		var out []string
		for _, e := range arr {
			if s, ok := referenceScalar(e); ok {
				out = append(out, s)
				if len(out) == MaxReferences {
					break
				}
			}
		}
		return out, nil
	}
	if s, ok := referenceScalar(v); ok {
		return []string{s}, nil
	}
	return nil, nil
}

func referenceScalar(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case number:
		return string(x), true
	}
	return "", false
}
