package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// TestExpectContinueDoesNotHoldLock: a client that sends `Expect:
// 100-continue` and waits for the 100 before its body (curl does for large
// bodies) gets its 100 Continue from the proxy before the key's write claim
// is taken, and holds no other writer back while it does not send; when it
// sends its body at last, it is decided on the state the other writer left.
func TestExpectContinueDoesNotHoldLock(t *testing.T) {
	api := legacyapi.New(legacyapi.DefaultSeed())
	up := httptest.NewServer(api)
	defer up.Close()
	startCaddy(t, site("conflict {\n\t\tlock_timeout 1s\n\t}", strings.TrimPrefix(up.URL, "http://")))
	e := do(t, nil, "GET", "/articles/1", nil).header.Get("ETag")

	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"id":1,"title":"waiting","views":0}`
	fmt.Fprintf(conn, "PUT /articles/1 HTTP/1.1\r\nHost: localhost:9080\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nIf-Match: %s\r\nExpect: 100-continue\r\n\r\n", len(body), e)
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	interim, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if interim.StatusCode != http.StatusContinue {
		t.Fatalf("first answer to Expect: 100-continue: %d, want 100", interim.StatusCode)
	}
	// The client now waits before its body: another writer is not held.
	start := time.Now()
	fast := do(t, nil, "PUT", "/articles/1", map[string]any{"id": 1, "title": "fast", "views": 0}, "If-Match: "+e)
	if fast.status != 200 || time.Since(start) > 700*time.Millisecond {
		t.Fatalf("other writer: %d after %v (held back by the waiting client?): %s", fast.status, time.Since(start), fast.body)
	}
	time.Sleep(1200 * time.Millisecond) // past lock_timeout: a claim held for the waiting client would show
	fmt.Fprint(conn, body)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusConflict {
		t.Fatalf("the waiting write, based on the version the other one replaced: %d, want 409", res.StatusCode)
	}
	if rec, _ := api.Record("articles", "1"); rec["title"] != "fast" {
		t.Fatalf("the upstream holds %v, want the other write", rec)
	}
}
