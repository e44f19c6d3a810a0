package conflict

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// PreconditionKind says what a write claims about the state it was based on.
type PreconditionKind uint8

const (
	// PreconditionNone: the write carries no precondition the proxy can judge.
	PreconditionNone PreconditionKind = iota
	// PreconditionAny: If-Match: * (the resource must exist).
	PreconditionAny
	// PreconditionAbsent: If-None-Match: * (create only).
	PreconditionAbsent
	// PreconditionVersions: the write was based on one of Versions.
	PreconditionVersions
	// PreconditionDate: If-Unmodified-Since, compared with Last-Modified versions.
	PreconditionDate
	// PreconditionForeign: a precondition in a form the configured version
	// source does not produce (an entity tag with last_modified, a date
	// with etag): the proxy cannot judge it, the upstream may.
	PreconditionForeign
)

// Precondition is the version a client says its write is based on.
type Precondition struct {
	Kind     PreconditionKind
	Versions []string // as the client sent them (PreconditionVersions)
	Date     time.Time
	// Source names the header or body field the claim came from.
	Source string
}

// Scheme says where versions come from (the `version` sub-directive).
type Scheme uint8

const (
	SchemeETag Scheme = iota
	SchemeLastModified
	SchemeHeader
	SchemeJSON
	SchemeHash
)

// ErrInvalidPrecondition is wrapped by ParsePrecondition's errors.
var ErrInvalidPrecondition = errors.New("invalid precondition")

// PreconditionError says which header could not be parsed.
type PreconditionError struct {
	Header string
	Value  string
}

func (e *PreconditionError) Error() string {
	return "invalid " + e.Header + " header: " + boundText(e.Value, 80)
}

func (e *PreconditionError) Unwrap() error { return ErrInvalidPrecondition }

// ParsePrecondition reads a write's claim from its headers, in the order of the
// README ("How writes are decided"): If-Match, If-Unmodified-Since (with SchemeLastModified),
// If-None-Match: *, then the version header (SchemeHeader, field).
// A claim carried in a JSON body is read by the caller.
func ParsePrecondition(h http.Header, scheme Scheme, field string) (Precondition, error) {
	// The header names are written canonical: no lookup needs to canonicalize
	// them (net/http stores a request's header names that way).
	if vals := h["If-Match"]; len(vals) > 0 {
		tags, any, ok := ParseTags(vals)
		if !ok {
			return Precondition{}, &PreconditionError{Header: "If-Match", Value: strings.Join(vals, ", ")}
		}
		if any {
			return Precondition{Kind: PreconditionAny, Source: "If-Match"}, nil
		}
		if len(tags) > 0 {
			if scheme == SchemeLastModified {
				// Entity tags are not dates: the upstream's own ETag, which
				// the proxy does not track.
				return Precondition{Kind: PreconditionForeign, Versions: tags, Source: "If-Match"}, nil
			}
			return Precondition{Kind: PreconditionVersions, Versions: tags, Source: "If-Match"}, nil
		}
	}
	// RFC 9110 section 13.2.2: If-Unmodified-Since is ignored when If-Match
	// is present; it is only meaningful with Last-Modified versions.
	if v := headerValue(h, "If-Unmodified-Since"); v != "" {
		t, err := http.ParseTime(v)
		if err != nil {
			return Precondition{}, &PreconditionError{Header: "If-Unmodified-Since", Value: v}
		}
		if scheme != SchemeLastModified {
			return Precondition{Kind: PreconditionForeign, Date: t, Source: "If-Unmodified-Since"}, nil
		}
		return Precondition{Kind: PreconditionDate, Date: t, Source: "If-Unmodified-Since"}, nil
	}
	if vals := h["If-None-Match"]; len(vals) > 0 {
		tags, any, ok := ParseTags(vals)
		if !ok {
			return Precondition{}, &PreconditionError{Header: "If-None-Match", Value: strings.Join(vals, ", ")}
		}
		if any {
			return Precondition{Kind: PreconditionAbsent, Source: "If-None-Match"}, nil
		}
		// If-None-Match with tags on a write is legal but says nothing about
		// the state the write was based on; the upstream judges it.
		_ = tags
	}
	if scheme == SchemeHeader && field != "" {
		if vals := h.Values(field); len(vals) > 0 {
			tags, _, ok := ParseTags(vals)
			if !ok || len(tags) == 0 {
				return Precondition{}, &PreconditionError{Header: field, Value: strings.Join(vals, ", ")}
			}
			return Precondition{Kind: PreconditionVersions, Versions: tags, Source: field}, nil
		}
	}
	return Precondition{Kind: PreconditionNone}, nil
}

// headerValue is h.Get of a canonical name.
func headerValue(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}
