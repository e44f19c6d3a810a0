// Package backends starts real third-party servers for one test: nginx with WebDAV and json-server
// (legacy upstreams that ignore preconditions), Apache httpd with mod_dav (a WebDAV server with locks
// that honours If-Match), and Redis (the shared version store: standalone, a Cluster, a Sentinel
// setup, TLS only). Each runs as a child process on a free loopback port and is stopped by t.Cleanup.
// It also runs real clients: the litmus WebDAV test suite (RunLitmus) and headless Chromium (DumpDOM).
//
// A missing program skips the test with the command that installs it, unless the environment has
// CONFLICT_REQUIRE_BACKENDS=1 (CI sets it): then the test fails, so that a real-backend test can
// never pass by being skipped.
package backends

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-conflict/caddy-conflict/internal/legacyapi"
)

// RequireEnv names the variable that turns a missing backend from a skip into a failure.
const RequireEnv = "CONFLICT_REQUIRE_BACKENDS"

// JSONServerDirEnv names the variable holding json-server's npm prefix (default <repo>/.ci/node).
const JSONServerDirEnv = "CONFLICT_JSON_SERVER_DIR"

const startTimeout = 15 * time.Second

// Copy of shared/backends/nginx.conf, the configuration the documented nginx facts come from.
//
//go:embed nginx.conf.tmpl
var nginxTemplate string

// StartNginxDAV starts nginx 1.22 with WebDAV (PUT, DELETE, MKCOL, COPY, MOVE; gzip on) and returns its
// base URL ("http://127.0.0.1:PORT") and root, the directory it serves, so a test can also change
// files behind the proxy's back.
func StartNginxDAV(t testing.TB) (baseURL, root string) {
	t.Helper()
	bin := lookPath("nginx")
	if bin == "" {
		missing(t, "nginx not installed: run .ci/run or apt-get install nginx")
		return "", ""
	}
	dir := t.TempDir()
	for _, sub := range []string{"dav", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("backends: nginx: %v", err)
		}
	}
	port := freePort(t)
	// One process without a master: it writes the test's files as the test's user, and the parent-death
	// signal takes all of nginx down with a test binary that dies without cleaning up.
	user := "master_process off;"
	if os.Geteuid() == 0 {
		user = "user root;\n" + user
	}
	conf, err := render(nginxTemplate, map[string]string{
		"$BACKENDS/nginx": dir,
		"127.0.0.1:18081": "127.0.0.1:" + strconv.Itoa(port),
		"user www-data;":  user,
	})
	if err != nil {
		t.Fatalf("backends: nginx: %v", err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatalf("backends: nginx: %v", err)
	}
	errorLog := filepath.Join(dir, "logs", "error.log")
	p := start(t, "nginx", dir, bin, "-c", confPath, "-e", errorLog, "-g", "daemon off;")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := p.waitReady(func() error { return dialOnly(addr) }); err != nil {
		log, _ := os.ReadFile(errorLog)
		t.Fatalf("backends: nginx did not start: %v\n%s%s", err, p.output(), log)
	}
	return "http://" + addr, filepath.Join(dir, "dav")
}

// StartJSONServer starts json-server 0.17.4 on a copy of seedJSON (the demo data set when nil) and
// returns its base URL. json-server is found under $CONFLICT_JSON_SERVER_DIR or <repo>/.ci/node.
func StartJSONServer(t testing.TB, seedJSON []byte) (baseURL string) {
	t.Helper()
	const install = "run .ci/run or npm install --prefix .ci/node json-server@0.17.4"
	node := lookPath("node")
	if node == "" {
		missing(t, "node not installed: install Node.js, then %s", install)
		return ""
	}
	prefix := os.Getenv(JSONServerDirEnv)
	if prefix == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("backends: json-server: %v", err)
		}
		prefix = filepath.Join(root, ".ci", "node")
	}
	cli := filepath.Join(prefix, "node_modules", "json-server", "lib", "cli", "bin.js")
	if _, err := os.Stat(cli); err != nil {
		missing(t, "json-server not installed in %s: %s", prefix, install)
		return ""
	}
	if seedJSON == nil {
		seedJSON = legacyapi.SeedJSON()
	}
	dir := t.TempDir()
	// json-server rewrites its database on every write: give it a copy.
	if err := os.WriteFile(filepath.Join(dir, "db.json"), seedJSON, 0o644); err != nil {
		t.Fatalf("backends: json-server: %v", err)
	}
	port := strconv.Itoa(freePort(t))
	p := start(t, "json-server", dir, node, cli, "--host", "127.0.0.1", "--port", port, "db.json")
	baseURL = "http://127.0.0.1:" + port
	if err := p.waitReady(func() error { return httpOK(baseURL + "/db") }); err != nil {
		t.Fatalf("backends: json-server did not start: %v\n%s", err, p.output())
	}
	return baseURL
}

// Redis is a redis-server child process that a test can stop (as if it crashed) and start again on
// the same address.
type Redis struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	// args are redis-server's arguments, the same at every Start; ready tells when it serves.
	args  []string
	ready func() error

	mu   sync.Mutex
	proc *process
}

// StartRedis starts redis-server without persistence on a free loopback port.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin := lookPath("redis-server")
	if bin == "" {
		missing(t, "redis-server not installed: run .ci/run or apt-get install redis-server")
		return nil
	}
	return startRedis(t, bin, nil, nil)
}

// startRedis starts redis-server on a free loopback port without persistence. args, when not nil,
// turns the standard arguments into the ones to use (append to them: later ones win); ready, when not
// nil, replaces the readiness check (a plain PING).
func startRedis(t testing.TB, bin string, args func(r *Redis, standard []string) []string, ready func(r *Redis) error) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: bin, dir: t.TempDir()}
	r.ready = func() error { return ping(r.Addr()) }
	if ready != nil {
		r.ready = func() error { return ready(r) }
	}
	t.Cleanup(r.Stop)
	for attempt := 1; ; attempt++ {
		// New ports each time (args may pick more, like a cluster bus port).
		r.port = freePort(t)
		r.args = []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no"}
		if args != nil {
			r.args = args(r, r.args)
		}
		out, err := r.start()
		if err == nil {
			return r
		}
		if attempt == 3 || !addrInUse(out) {
			t.Fatalf("backends: redis-server did not start: %v\n%s", err, out)
		}
	}
}

// Addr is host:port, for a Redis client or the proxy's `store redis { address ... }`.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Start starts Redis again after Stop, on the same port and empty. Call it from the test goroutine.
func (r *Redis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		return
	}
	if out, err := r.start(); err != nil {
		r.t.Fatalf("backends: redis-server did not start: %v\n%s", err, out)
	}
}

// start launches redis-server and waits until it is ready; r.mu is held or r not yet shared. On
// failure it returns the server's output.
func (r *Redis) start() (string, error) {
	p := launch(r.t, "redis-server", r.dir, r.bin, r.args...)
	if err := p.waitReady(r.ready); err != nil {
		p.kill()
		return p.output(), err
	}
	r.proc = p
	return "", nil
}

// log is what the running redis-server wrote (its last 64 KiB), for error messages.
func (r *Redis) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return "(not running)"
	}
	return r.proc.output()
}

// Stop kills Redis at once (SIGKILL, like a crash or a lost node) and waits until it is gone.
// It may be called from any goroutine, and more than once.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc != nil {
		r.proc.kill()
		r.proc = nil
	}
}

// missing skips the test, or fails it when CI demands real backends.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf(format+" (%s=1: real backends are required)", append(args, RequireEnv)...)
	}
	t.Skipf(format, args...)
}

// lookPath finds a program, also in the sbin folders that a non-root PATH may lack.
func lookPath(name string) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && info.Mode()&0o111 != 0 {
			return path
		}
	}
	return ""
}

// Fixed ports that other parts of the project use: caddytest's (admin 2999, http 9080, https 9443) and
// the demo's (8080, 8081, admin 2019).
var reservedPorts = map[int]bool{2019: true, 2999: true, 8080: true, 8081: true, 9080: true, 9443: true}

// freePort picks a free loopback port for a backend that binds it right after. It picks at random
// below the kernel's ephemeral range (ip_local_port_range, from 32768 by default) and checks that it
// can be bound: a port the kernel handed out (127.0.0.1:0) is where outgoing connections, of this
// test or of tests running at the same time, take their local ports, and one of them sometimes took
// it between the pick and the backend's bind (a Redis Cluster bus port did here). Where that range
// leaves too little room below it, the kernel picks.
func freePort(t testing.TB) int {
	t.Helper()
	low, high := 10000, ephemeralLow()
	for range 50 {
		port := 0
		if high-low >= 1000 {
			port = low + rand.IntN(high-low)
			if reservedPorts[port] {
				continue
			}
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			if port != 0 {
				continue // in use: pick another
			}
			t.Fatalf("backends: free port: %v", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !reservedPorts[port] {
			return port
		}
	}
	t.Fatalf("backends: no free port outside the reserved ones")
	return 0
}

// ephemeralLow is the first port of Linux's ephemeral range, or 0 when it cannot be read.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return 0
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 0
	}
	return low
}

// addrInUse tells whether a backend's start failed because its port was taken meanwhile.
func addrInUse(output string) bool {
	return strings.Contains(output, "Address already in use") || strings.Contains(output, "address already in use")
}

// render replaces each key of the template; a key that is not there means the template drifted.
func render(template string, replacements map[string]string) (string, error) {
	var pairs []string
	for old, replacement := range replacements {
		if !strings.Contains(template, old) {
			return "", fmt.Errorf("template has no %q", old)
		}
		pairs = append(pairs, old, replacement)
	}
	return strings.NewReplacer(pairs...).Replace(template), nil
}

// repoRoot walks up from the working directory (a test's package folder) to go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func dialOnly(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

func httpOK(url string) error {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// ping speaks just enough RESP to ask a Redis server whether it serves.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return pingConn(conn)
}

// pingConn sends PING on conn, checks the answer and closes conn.
func pingConn(conn net.Conn) error {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
