// Command flood measures what a flood of long, never-seen paths leaves in memory: every request has its
// own path of -path-bytes (100 KiB by default), read once and written once (GET, then PUT with the
// ETag it got), through real Caddy, one configuration after the other:
//
//	A      reverse_proxy
//	B      conflict { cache_size 8MiB } + reverse_proxy
//	redis  conflict { cache_size 8MiB; store redis { address <a local redis-server it starts> } } + reverse_proxy
//
//	go run ./bench/flood                  # 2,000 paths of 100 KiB per configuration, a Markdown table
//	go run ./bench/flood -n 500 -configs A,B
//	go run ./bench/flood -scan            # a scanner: each path only read, and the upstream has none (404)
//
// For each Caddy process it reports the RSS before and after the flood (VmRSS) and its peak (VmHWM), and
// for redis the DBSIZE and INFO memory used_memory before and after. Caddy runs with
// `servers { max_header_size 2MB }`; the upstream (in this process) keeps one counter per path hash.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scan: each path is only read, and the upstream answers 404 (a scanner of random paths).
var scan bool

type config struct {
	name, directive string
	redis           bool
}

type result struct {
	name                  string
	rssBefore, rssAfter   int64
	hwm                   int64
	dbBefore, dbAfter     int64
	usedBefore, usedAfter int64
	statuses              map[int]int
	elapsed               time.Duration
}

func main() {
	n := flag.Int("n", 2000, "distinct paths per configuration (each read once and written once)")
	pathBytes := flag.Int("path-bytes", 100<<10, "length of each path")
	workers := flag.Int("c", 8, "concurrent clients")
	caddyBin := flag.String("caddy", "", "a Caddy binary with this module (default: go build ./cmd/caddy)")
	configs := flag.String("configs", "A,B,redis", "configurations to run")
	flag.BoolVar(&scan, "scan", false, "read each path once, of an upstream that has none of them (404), instead of GET then PUT")
	flag.Parse()
	if err := run(*n, *pathBytes, *workers, *caddyBin, strings.Split(*configs, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(1)
	}
}

func run(n, pathBytes, workers int, caddyBin string, names []string) error {
	dir, err := os.MkdirTemp("", "conflict-flood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if caddyBin == "" {
		caddyBin = filepath.Join(dir, "caddy")
		fmt.Fprintln(os.Stderr, "go build ./cmd/caddy")
		cmd := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build ./cmd/caddy (run it from the module root): %w", err)
		}
	}
	up, err := startUpstream()
	if err != nil {
		return err
	}
	all := []config{
		{name: "A"},
		{name: "B", directive: "conflict {\n\t\tcache_size 8MiB\n\t}"},
		{name: "redis", directive: "conflict {\n\t\tcache_size 8MiB\n\t\tstore redis {\n\t\t\taddress {redis}\n\t\t}\n\t}", redis: true},
	}
	var results []result
	for _, c := range all {
		if !slices.Contains(names, c.name) {
			continue
		}
		r, err := flood(dir, caddyBin, up, c, n, pathBytes, workers)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		results = append(results, r)
	}
	what := "each GET then PUT with its ETag"
	if scan {
		what = "each read once with GET, none of them on the upstream (404)"
	}
	fmt.Printf("%d distinct paths of %d bytes per configuration, %s, %d clients\n\n", n, pathBytes, what, workers)
	fmt.Println("| config | statuses | Caddy RSS before | after | growth | peak (VmHWM) | Redis DBSIZE before → after | Redis used_memory before → after |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		redis := "–"
		used := "–"
		if r.dbAfter >= 0 {
			redis = fmt.Sprintf("%d → %d", r.dbBefore, r.dbAfter)
			used = fmt.Sprintf("%s → %s", mib(r.usedBefore), mib(r.usedAfter))
		}
		var st []string
		for _, code := range slices.Sorted(func(yield func(int) bool) {
			for k := range r.statuses {
				if !yield(k) {
					return
				}
			}
		}) {
			st = append(st, fmt.Sprintf("%d×%d", code, r.statuses[code]))
		}
		fmt.Printf("| %s | %s | %s | %s | %+.1f MiB | %s | %s | %s |\n", r.name, strings.Join(st, " "), mib(r.rssBefore),
			mib(r.rssAfter), float64(r.rssAfter-r.rssBefore)/(1<<20), mib(r.hwm), redis, used)
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// upstream is a legacy API that answers any path: GET 200 with ETag "<hash>-<version>", PUT bumps the
// version (If-Match ignored) and answers 204 with the new ETag. It keeps a counter per path hash only.
type upstream struct {
	seed     maphash.Seed
	mu       sync.Mutex
	versions map[uint64]int
}

func startUpstream() (string, error) {
	u := &upstream{seed: maphash.MakeSeed(), versions: map[uint64]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = (&http.Server{Handler: u, MaxHeaderBytes: 4 << 20}).Serve(ln) }()
	return ln.Addr().String(), nil
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/scan/") {
		http.NotFound(w, r)
		return
	}
	h := maphash.String(u.seed, r.URL.Path)
	u.mu.Lock()
	v := max(u.versions[h], 1)
	if r.Method == http.MethodPut {
		v++
		u.versions[h] = v
	}
	u.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%d"`, h, v))
	if r.Method == http.MethodPut {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"version":%d}`, v)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func flood(dir, caddyBin, up string, c config, n, pathBytes, workers int) (result, error) {
	res := result{name: c.name, dbBefore: -1, dbAfter: -1, statuses: map[int]int{}}
	directive := c.directive
	var redisPort int
	if c.redis {
		var err error
		if redisPort, err = freePort(); err != nil {
			return res, err
		}
		rdir := filepath.Join(dir, "redis")
		_ = os.MkdirAll(rdir, 0o755)
		rs := exec.Command("redis-server", "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", rdir)
		if err := rs.Start(); err != nil {
			return res, fmt.Errorf("redis-server (Debian package redis-server): %w", err)
		}
		defer func() { _ = rs.Process.Kill(); _ = rs.Wait() }()
		if err := waitFor(func() error { _, err := redisCLI(redisPort, "PING"); return err }); err != nil {
			return res, err
		}
		directive = strings.ReplaceAll(directive, "{redis}", "127.0.0.1:"+strconv.Itoa(redisPort))
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	admin, err := freePort()
	if err != nil {
		return res, err
	}
	file := filepath.Join(dir, c.name+".caddyfile")
	caddyfile := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tservers {\n\t\tmax_header_size 2MB\n\t}\n}\n\n"+
		"http://127.0.0.1:%d {\n\t%s\n\treverse_proxy %s\n}\n", admin, port, directive, up)
	if err := os.WriteFile(file, []byte(caddyfile), 0o644); err != nil {
		return res, err
	}
	logf, err := os.Create(filepath.Join(dir, c.name+".log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.Command(caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 30 * time.Second}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitFor(func() error {
		resp, err := client.Get(base + "/warm")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}); err != nil {
		return res, err
	}
	// Warm up with short paths, so that "before" includes the connections and buffers of the run.
	for i := range 200 {
		if _, err := readWrite(client, fmt.Sprintf("%s/warm/%d", base, i)); err != nil {
			return res, err
		}
	}
	time.Sleep(500 * time.Millisecond)
	res.rssBefore, _ = procStatus(cmd.Process.Pid, "VmRSS")
	if c.redis {
		res.dbBefore, res.usedBefore = redisMemory(redisPort)
	}
	pad := strings.Repeat("p", pathBytes)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				var codes []int
				var err error
				if scan {
					codes, err = readMissing(client, fmt.Sprintf("%s/scan/%d/%s", base, i, pad))
				} else {
					codes, err = readWrite(client, fmt.Sprintf("%s/flood/%d/%s", base, i, pad))
				}
				mu.Lock()
				for _, code := range codes {
					res.statuses[code]++
				}
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if firstErr != nil {
		return res, firstErr
	}
	time.Sleep(time.Second) // ristretto's buffers drain, queued Redis work lands
	res.rssAfter, _ = procStatus(cmd.Process.Pid, "VmRSS")
	res.hwm, _ = procStatus(cmd.Process.Pid, "VmHWM")
	if c.redis {
		res.dbAfter, res.usedAfter = redisMemory(redisPort)
	}
	fmt.Fprintf(os.Stderr, "%s: %d paths in %s\n", c.name, n, res.elapsed.Round(time.Millisecond))
	return res, nil
}

// readMissing GETs url, which the upstream does not have: 404.
func readMissing(client *http.Client, url string) ([]int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		return []int{resp.StatusCode}, fmt.Errorf("GET: %s, want 404", resp.Status)
	}
	return []int{resp.StatusCode}, nil
}

// readWrite GETs url and PUTs it back with the ETag it got; both must succeed.
func readWrite(client *http.Client, url string) ([]int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	codes := []int{resp.StatusCode}
	tag := resp.Header.Get("ETag")
	if resp.StatusCode != http.StatusOK || tag == "" {
		return codes, fmt.Errorf("GET: %s, ETag %q", resp.Status, tag)
	}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, url, strings.NewReader(`{"x":1}`))
	req.Header.Set("If-Match", tag)
	req.Header.Set("Content-Type", "application/json")
	resp, err = client.Do(req)
	if err != nil {
		return codes, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	codes = append(codes, resp.StatusCode)
	if resp.StatusCode/100 != 2 {
		return codes, fmt.Errorf("PUT: %s", resp.Status)
	}
	return codes, nil
}

func waitFor(f func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procStatus reads a field of /proc/<pid>/status in bytes (the kernel gives kB).
func procStatus(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New(field + " not found")
}

func redisCLI(port int, args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port)}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}

func redisMemory(port int) (dbsize, used int64) {
	s, _ := redisCLI(port, "DBSIZE")
	dbsize, _ = strconv.ParseInt(s, 10, 64)
	info, _ := redisCLI(port, "INFO", "memory")
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			used, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return dbsize, used
}
