package caddyconflict

import (
	"net/http"
	"testing"
)

func TestVariantOf(t *testing.T) {
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	jsonReq := hdr("Accept", "application/json", "Accept-Language", "en")
	xmlReq := hdr("Accept", "application/xml", "Accept-Language", "en")

	for _, tt := range []struct {
		name string
		resp http.Header
		ok   bool
		star bool
	}{
		{"no Vary", hdr(), false, false},
		{"Vary: Accept-Encoding", hdr("Vary", "Accept-Encoding"), false, false},
		{"Vary: Origin, accept-encoding", hdr("Vary", "Origin, accept-encoding"), false, false},
		{"Vary: Accept", hdr("Vary", "Accept"), true, false},
		{"Vary: accept on a second line", hdr("Vary", "Origin", "Vary", "accept"), true, false},
		{"Vary: *", hdr("Vary", "Accept, *"), false, true},
	} {
		id, ok := variantOf(tt.resp, jsonReq)
		if ok != tt.ok || (id == "*") != tt.star || ok && id == "" {
			t.Errorf("%s: variantOf = %q %v", tt.name, id, ok)
		}
	}

	vary := hdr("Vary", "Accept")
	j, _ := variantOf(vary, jsonReq)
	x, _ := variantOf(vary, xmlReq)
	j2, _ := variantOf(hdr("Vary", "accept"), hdr("Accept", " application/json", "Cookie", "a=b"))
	if j == x {
		t.Errorf("JSON and XML reads are one variant: %q", j)
	}
	if j != j2 {
		t.Errorf("two reads of the JSON variant are two variants: %q %q", j, j2)
	}
	// Only the headers Vary names tell variants apart.
	l1, _ := variantOf(hdr("Vary", "Accept, Accept-Language"), jsonReq)
	l2, _ := variantOf(hdr("Vary", "Accept, Accept-Language"), hdr("Accept", "application/json", "Accept-Language", "de"))
	if l1 == l2 || l1 == j {
		t.Errorf("Accept-Language not told apart: %q %q %q", l1, l2, j)
	}
	// A header absent from the request is a value too.
	none, _ := variantOf(vary, hdr())
	if none == j || none == x {
		t.Errorf("a read without Accept is the JSON or XML variant: %q", none)
	}
}
