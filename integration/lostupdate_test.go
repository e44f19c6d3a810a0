package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// counterClient returns an HTTP client sized for many concurrent clients.
func counterClient(gzip bool) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: !gzip}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// increment runs n read-modify-write increments of /counters/1, retrying
// each on 409 with a fresh GET. It returns how many 409s it met.
func increment(t *testing.T, client *http.Client, n int, gzip bool) (conflicts int) {
	return incrementAt(t, client, base, n, gzip)
}

// incrementAt is increment through the Caddy node at baseURL; the nodes of
// a cluster are sent one Host, as a load balancer would.
func incrementAt(t *testing.T, client *http.Client, baseURL string, n int, gzip bool) (conflicts int) {
	host := []string{}
	if baseURL != base {
		host = append(host, lbHost)
	}
	for done := 0; done < n; {
		hdr := host
		if gzip {
			hdr = append(hdr, "Accept-Encoding: gzip")
		}
		g := do(t, client, http.MethodGet, baseURL+"/counters/1", nil, hdr...)
		if g.status != http.StatusOK {
			t.Errorf("GET: %d %s", g.status, g.body)
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(g.body, &doc); err != nil {
			t.Errorf("GET body: %v (gzip %v, encoding %q)", err, gzip, g.header.Get("Content-Encoding"))
			return
		}
		etag := g.header.Get("ETag")
		if gzip && !strings.HasSuffix(etag, `-gzip"`) {
			t.Errorf("expected encode's -gzip ETag, got %q; headers %v", etag, g.header)
			return
		}
		value, _ := doc["value"].(float64)
		doc["value"] = int(value) + 1 // the rest of the document is written back as read
		p := do(t, client, http.MethodPut, baseURL+"/counters/1", doc, append(host, "If-Match: "+etag)...)
		switch p.status {
		case http.StatusOK, http.StatusNoContent:
			done++
		case http.StatusConflict:
			conflicts++
		default:
			t.Errorf("PUT: unexpected %d %s", p.status, p.body)
			return
		}
	}
	return conflicts
}

// runCounter lets clients×perClient increments race and returns the final
// counter value and the 409s met.
func runCounter(t *testing.T, clients, perClient int, gzip bool) (final, conflicts int) {
	client := counterClient(gzip)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range clients {
		wg.Go(func() {
			c := increment(t, client, perClient, gzip)
			mu.Lock()
			conflicts += c
			mu.Unlock()
		})
	}
	wg.Wait()
	g := do(t, client, http.MethodGet, "/counters/1", nil)
	var doc struct{ Value int }
	if err := json.Unmarshal(g.body, &doc); err != nil {
		t.Fatalf("final GET: %v %s", err, g.body)
	}
	return doc.Value, conflicts
}

func counterSeed() map[string][]map[string]any {
	return map[string][]map[string]any{"counters": {{"id": 1, "value": 0}}}
}

const (
	lostClients   = 32
	lostPerClient = 50
)

// TestLostUpdateWithoutHandler proves the experiment can fail: the legacy
// upstream applies stale writes, so plain reverse_proxy loses updates.
func TestLostUpdateWithoutHandler(t *testing.T) {
	up := startLegacy(t, counterSeed())
	startCaddy(t, "\treverse_proxy "+up+"\n")
	final, _ := runCounter(t, lostClients, lostPerClient, false)
	if final >= lostClients*lostPerClient {
		t.Fatalf("without the handler the counter reached %d: the test cannot tell a lost update", final)
	}
	t.Logf("without conflict: %d of %d increments survived", final, lostClients*lostPerClient)
}

func TestNoLostUpdate(t *testing.T) {
	up := startLegacy(t, counterSeed())
	startCaddy(t, site("conflict", up))
	final, conflicts := runCounter(t, lostClients, lostPerClient, false)
	if final != lostClients*lostPerClient {
		t.Fatalf("counter = %d, want %d: updates were lost", final, lostClients*lostPerClient)
	}
	if conflicts == 0 {
		t.Fatal("no 409 at all: the clients did not race")
	}
	t.Logf("%d increments, %d conflicts answered with 409", final, conflicts)
}

// TestNoLostUpdateGzip: encode compresses the responses and appends -gzip to
// the ETags; the clients send those tags back in If-Match.
func TestNoLostUpdateGzip(t *testing.T) {
	up := startLegacy(t, map[string][]map[string]any{
		// A body over encode's 512-byte minimum, so responses are compressed.
		"counters": {{"id": 1, "value": 0, "padding": strings.Repeat("x", 600)}},
	})
	startCaddy(t, "\tencode gzip\n"+site("conflict", up))
	final, _ := runCounter(t, lostClients, lostPerClient, true)
	if final != lostClients*lostPerClient {
		t.Fatalf("counter = %d, want %d", final, lostClients*lostPerClient)
	}
}

// TestNoLostUpdateAcrossReload: versions learned before `caddy reload`
// still protect writes after it.
func TestNoLostUpdateAcrossReload(t *testing.T) {
	up := startLegacy(t, counterSeed())
	startCaddy(t, site("conflict", up))
	client := counterClient(false)
	g := do(t, client, http.MethodGet, "/counters/1", nil)
	oldTag := g.header.Get("ETag")
	expectStatus(t, do(t, client, http.MethodPut, "/counters/1", `{"id":1,"value":1}`, "If-Match: "+oldTag), 200, "first write")

	// A changed config is really reloaded (an identical one is ignored).
	reloadCaddy(t, site("conflict {\n\t\tlock_timeout 9s\n\t}", up))
	r := do(t, client, http.MethodPut, "/counters/1", `{"id":1,"value":100}`, "If-Match: "+oldTag)
	expectProblem(t, r, http.StatusConflict, "stale-version")

	final, _ := runCounter(t, lostClients, lostPerClient, false)
	if final != 1+lostClients*lostPerClient {
		t.Fatalf("counter = %d, want %d", final, 1+lostClients*lostPerClient)
	}
}
