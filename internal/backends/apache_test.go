package backends

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// What Apache 2.4.71 (Debian) mod_dav did here, step by step (the test checks each):
//
//	PUT new file                        201 Created (Location, no ETag)
//	GET                                 200, ETag "<size hex>-<mtime µs hex>", W/ while the mtime is
//	                                    less than a second old, strong after; Last-Modified
//	PUT If-Match: "0-0" (stale)         412 Precondition Failed (mod_dav evaluates If-Match itself)
//	LOCK exclusive write, Depth 0       200, Lock-Token: <opaquelocktoken:UUID>, text/xml lockdiscovery
//	GET                                 same ETag as before the LOCK
//	PUT without the token               423 Locked
//	PUT If: (<opaquelocktoken:UUID>)    204 No Content; a new ETag
//	UNLOCK Lock-Token: <…>              204 No Content; ETag unchanged
//	PUT without a token after UNLOCK    204
//	PROPPATCH set a dead property       207 Multi-Status, the property 200 OK; ETag unchanged
//	PROPFIND Depth 0                    207 with the property's value
func TestApacheDAVLocks(t *testing.T) {
	base, root := StartApacheDAV(t)
	if root == "" {
		t.Fatal("no root")
	}
	url := base + "/note.txt"
	expect := func(what string, resp *http.Response, body string, statuses ...int) {
		t.Helper()
		for _, s := range statuses {
			if resp.StatusCode == s {
				return
			}
		}
		t.Fatalf("%s: %s, want %v\n%s", what, resp.Status, statuses, body)
	}
	etagPattern := regexp.MustCompile(`^(W/)?"[0-9a-f]+-[0-9a-f]+"$`)
	// The opaque part: Apache marks a tag weak while the file is less than a second old.
	etagOf := func(what string) string {
		t.Helper()
		resp, body := request(t, "GET", url, "", "Accept-Encoding", "identity")
		expect("GET "+what, resp, body, http.StatusOK)
		etag := resp.Header.Get("ETag")
		if !etagPattern.MatchString(etag) {
			t.Fatalf("GET %s: ETag %q", what, etag)
		}
		return strings.TrimPrefix(etag, "W/")
	}

	resp, body := request(t, "PUT", url, "version one")
	expect("PUT", resp, body, http.StatusCreated)
	resp, body = request(t, "GET", url, "")
	if body != "version one" || resp.Header.Get("Last-Modified") == "" {
		t.Fatalf("GET: %q Last-Modified %q", body, resp.Header.Get("Last-Modified"))
	}
	v1 := etagOf("after PUT")

	resp, body = request(t, "PUT", url, "stale", "If-Match", `"0-0"`)
	expect("PUT with a stale If-Match", resp, body, http.StatusPreconditionFailed)

	const lockBody = `<?xml version="1.0" encoding="utf-8"?>
<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>`
	resp, body = request(t, "LOCK", url, lockBody, "Content-Type", "application/xml", "Timeout", "Second-60", "Depth", "0")
	expect("LOCK", resp, body, http.StatusOK)
	lockToken := resp.Header.Get("Lock-Token") // <opaquelocktoken:…>
	if !regexp.MustCompile(`^<opaquelocktoken:[0-9a-f-]+>$`).MatchString(lockToken) || !strings.Contains(body, "lockdiscovery") {
		t.Fatalf("LOCK: Lock-Token %q\n%s", lockToken, body)
	}
	if v := etagOf("after LOCK"); v != v1 {
		t.Errorf("LOCK changed the ETag: %s -> %s", v1, v)
	}

	resp, body = request(t, "PUT", url, "no token")
	expect("PUT without the lock token", resp, body, http.StatusLocked)
	resp, body = request(t, "PUT", url, "version two", "If", "("+lockToken+")")
	expect("PUT with the lock token", resp, body, http.StatusNoContent)
	v2 := etagOf("after the locked PUT")
	if v2 == v1 {
		t.Errorf("the PUT under the lock kept the ETag %s", v1)
	}

	resp, body = request(t, "UNLOCK", url, "", "Lock-Token", lockToken)
	expect("UNLOCK", resp, body, http.StatusNoContent)
	if v := etagOf("after UNLOCK"); v != v2 {
		t.Errorf("UNLOCK changed the ETag: %s -> %s", v2, v)
	}

	const proppatch = `<?xml version="1.0" encoding="utf-8"?>
<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:caddy-conflict:test"><D:set><D:prop><Z:colour>blue</Z:colour></D:prop></D:set></D:propertyupdate>`
	resp, body = request(t, "PROPPATCH", url, proppatch, "Content-Type", "application/xml")
	expect("PROPPATCH", resp, body, http.StatusMultiStatus)
	if !strings.Contains(body, "200 OK") {
		t.Errorf("PROPPATCH: %s", body)
	}
	if v := etagOf("after PROPPATCH"); v != v2 {
		t.Errorf("PROPPATCH changed the ETag: %s -> %s", v2, v)
	}
	resp, body = request(t, "PROPFIND", url, `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`,
		"Content-Type", "application/xml", "Depth", "0")
	expect("PROPFIND", resp, body, http.StatusMultiStatus)
	if !strings.Contains(body, "blue") {
		t.Errorf("PROPFIND lacks the property:\n%s", body)
	}

	resp, body = request(t, "PUT", url, "after unlock")
	expect("PUT after UNLOCK", resp, body, http.StatusNoContent)
}
