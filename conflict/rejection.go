package conflict

import (
	"fmt"
	"strconv"
	"strings"
)

// Rejection is a write the proxy answers itself instead of forwarding it:
// every step of the write path that can stop a write returns one, and one
// place turns it into the answer (a problem document, or in report mode a
// Conflict-Report header on the forwarded write).
type Rejection struct {
	Kind Kind
	// Status is the HTTP status; 0 means the kind's (the kinds table).
	Status int
	// Detail is the sentence the client reads; "" means the kind's default.
	Detail string
	// Related names the other resources a guard rejection is about.
	Related []string
}

// StatusCode is the HTTP status the rejection is answered with.
func (r *Rejection) StatusCode() int {
	if r.Status != 0 {
		return r.Status
	}
	return r.Kind.Status()
}

// Rejection is the answer to a write with precondition p that d does not
// forward, or nil. hint says how to send a precondition, for
// precondition-required (see PreconditionHint).
func (d Decision) Rejection(p Precondition, hint string) *Rejection {
	if d.Forward() {
		return nil
	}
	r := &Rejection{Kind: d.Kind, Status: d.Status}
	switch d.Kind {
	case KindStaleVersion:
		r.Detail = "The resource was changed since the version this request is based on (" + p.Source +
			"). Fetch the current version, reapply your change and retry."
	case KindDeleted:
		r.Detail = "The resource was deleted."
	case KindAlreadyExists:
		r.Detail = "The resource already exists (If-None-Match: *)."
	case KindPreconditionRequired:
		r.Detail = "This write must say which version it is based on: " + hint + "."
	}
	return r
}

// PreconditionHint says how a client sends the version its write is based
// on, for each version source; field is the `version header` field and
// pointer the `version json` pointer.
func PreconditionHint(s Scheme, field, pointer string) string {
	switch s {
	case SchemeLastModified:
		return "send If-Unmodified-Since with the Last-Modified you read, or If-Match"
	case SchemeHeader:
		return "send If-Match with the ETag you read, or " + field + " with the version you read"
	case SchemeJSON:
		return "send If-Match with the ETag you read, or the version you read in the body at " + pointer
	default:
		return "send If-Match with the ETag you read (or If-None-Match: * to create)"
	}
}

// InvalidPrecondition rejects a write whose precondition cannot be parsed.
func InvalidPrecondition(err error) *Rejection {
	return &Rejection{Kind: KindInvalidPrecondition, Detail: err.Error()}
}

// InvalidBody rejects a write whose body cannot be read or parsed where the
// version in it must be checked.
func InvalidBody(why string) *Rejection {
	return &Rejection{Kind: KindInvalidBody, Detail: why}
}

// BodyTooLarge rejects a write whose version is in a body larger than
// limit bytes.
func BodyTooLarge(limit int64) *Rejection {
	return &Rejection{Kind: KindBodyTooLarge, Detail: "The request body is larger than " +
		strconv.FormatInt(limit, 10) + " bytes, so the version in it cannot be checked; send If-Match instead."}
}

// WriteInProgress rejects a write that waited lock_timeout behind another.
func WriteInProgress() *Rejection {
	return &Rejection{Kind: KindWriteInProgress, Detail: "Another write to this resource is in progress; retry shortly."}
}

// StoreUnavailable rejects a write the shared version store cannot check.
func StoreUnavailable() *Rejection {
	return &Rejection{Kind: KindStoreUnavailable,
		Detail: "The version store cannot be reached, so this write cannot be checked; retry shortly."}
}

// UpstreamUnavailable rejects a write to an uncertain resource whose
// version the upstream could not be asked for.
func UpstreamUnavailable() *Rejection {
	return &Rejection{Kind: KindUpstreamUnavailable,
		Detail: "The outcome of an earlier write to this resource is unknown and the upstream could not be asked for its current version."}
}

// RecordLost rejects a write that claims a version of a resource whose
// record the proxy lost after writing it, when the upstream could not be
// asked for the current version.
func RecordLost() *Rejection {
	return &Rejection{Kind: KindUpstreamUnavailable,
		Detail: "The proxy lost its record of this resource after a write and the upstream could not be asked for its current version."}
}

// GuardRejection rejects a write that breaks a guard of kind
// (parent-missing, not-empty, reference-missing) naming related.
func GuardRejection(kind Kind, related []string) *Rejection {
	r := &Rejection{Kind: kind, Related: related}
	switch kind {
	case KindParentMissing:
		r.Detail = "The resource this write goes into (" + related[0] + ") does not exist; create it first, then retry."
	case KindNotEmpty:
		r.Detail = fmt.Sprintf("This resource still has %s, listed in related; delete them first, then retry.",
			plural(len(related), "a child resource", "child resources"))
	case KindReferenceMissing:
		r.Detail = fmt.Sprintf("This write refers to %s that does not exist (%s); create it or change the reference, then retry.",
			plural(len(related), "a resource", "resources"), strings.Join(related, ", "))
	}
	return r
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
