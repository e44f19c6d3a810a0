package backends

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

func request(t *testing.T, method, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(data)
}

// nginx takes PUTs, serves them with an ETag, and applies a PUT whose If-Match is stale.
func TestNginxDAVIgnoresIfMatch(t *testing.T) {
	base, root := StartNginxDAV(t)

	if resp, _ := request(t, "PUT", base+"/note.txt", "version one"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %s", resp.Status)
	}
	resp, body := request(t, "GET", base+"/note.txt", "", "Accept-Encoding", "identity")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || body != "version one" || !regexp.MustCompile(`^"[0-9a-f]+-[0-9a-f]+"$`).MatchString(etag) {
		t.Fatalf("GET: %s %q ETag %q", resp.Status, body, etag)
	}
	if data, err := os.ReadFile(filepath.Join(root, "note.txt")); err != nil || string(data) != "version one" {
		t.Errorf("root has %q, %v", data, err)
	}

	resp, _ = request(t, "PUT", base+"/note.txt", "a stale write", "If-Match", `"0-0"`)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("stale PUT: %s, want 204 (nginx ignores If-Match)", resp.Status)
	}
	if _, body := request(t, "GET", base+"/note.txt", ""); body != "a stale write" {
		t.Errorf("after the stale PUT: %q", body)
	}
}

func TestJSONServerWeakETags(t *testing.T) {
	base := StartJSONServer(t, nil)
	resp, body := request(t, "GET", base+"/articles/1", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("ETag"), `W/"`) || !strings.Contains(body, `"Hello"`) {
		t.Fatalf("GET: %s ETag %q body %q", resp.Status, resp.Header.Get("ETag"), body)
	}
	// It writes blindly too: a stale If-Match is applied.
	resp, body = request(t, "PUT", base+"/articles/1", `{"title":"blind"}`,
		"Content-Type", "application/json", "If-Match", `W/"0-stale"`)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"blind"`) {
		t.Errorf("stale PUT: %s %q", resp.Status, body)
	}
}

func TestRedisStopAndStart(t *testing.T) {
	r := StartRedis(t)
	if err := rawPing(r.Addr()); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := rawPing(r.Addr()); err == nil {
		t.Fatal("PING answered after Stop")
	}
	r.Start()
	if err := rawPing(r.Addr()); err != nil {
		t.Fatalf("after Start: %v", err)
	}
}

func rawPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// A missing program skips, or fails under CONFLICT_REQUIRE_BACKENDS=1.
func TestMissingBackend(t *testing.T) {
	for _, require := range []string{"", "1"} {
		t.Setenv(RequireEnv, require)
		rec := &recorder{TB: t}
		done := make(chan struct{})
		go func() { // Skipf and Fatalf end the goroutine that calls them
			defer close(done)
			missing(rec, "nothing installed")
		}()
		<-done
		if want := require == "1"; rec.failed != want || rec.skipped == want {
			t.Errorf("%s=%q: failed %v skipped %v", RequireEnv, require, rec.failed, rec.skipped)
		}
	}
}

type recorder struct {
	testing.TB
	failed, skipped bool
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(string, ...any) {
	r.failed = true
	runtime.Goexit()
}
func (r *recorder) Skipf(string, ...any) {
	r.skipped = true
	runtime.Goexit()
}

// Ports come from below the ephemeral range, where outgoing connections never take them.
func TestFreePort(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		port := freePort(t)
		if reservedPorts[port] || (low > 11000 && (port < 10000 || port >= low)) {
			t.Fatalf("port %d (ephemeral range from %d)", port, low)
		}
	}
	// What redis-server and apache2 print when a port was taken between the pick and their bind.
	for _, out := range []string{
		"# Warning: Could not create server TCP listening socket 127.0.0.1:35337: bind: Address already in use",
		"(98)Address already in use: AH00072: make_sock: could not bind to address 127.0.0.1:58273",
	} {
		if !addrInUse(out) {
			t.Errorf("addrInUse(%q) = false", out)
		}
	}
}
