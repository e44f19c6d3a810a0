// Command bench measures what caddy-conflict costs over a plain reverse_proxy, side by side in one run:
//
//	go run ./bench            # the full benchmark (about 11 minutes on 2 busy cores), a Markdown report on stdout
//	go run ./bench -smoke     # a few seconds per workload: asserts only that every configuration answered correctly
//
// It builds Caddy with this module (./cmd/caddy), starts the fast upstream (./bench/cmd/upstream) and one
// Caddy process per configuration, and drives them with wrk (Debian package wrk) and the Lua scripts in
// bench/wrk. Configurations:
//
//	A        reverse_proxy
//	B        conflict + reverse_proxy (defaults: memory store, cache_size 64MiB)
//	A-gzip   encode gzip + reverse_proxy
//	C        encode gzip + conflict + reverse_proxy
//	json     conflict { version json /version } (GETs of 1 KiB and 64 KiB documents, the field last)
//	hash     conflict { version hash } (the same GETs)
//	history  conflict { history 8 16MiB; merge auto }
//	guards   conflict { guard parent; guard children; guard reference /ref /docs/{value} }
//	redis    conflict { store redis { address <a local redis-server the command starts> } }
//
// Each configuration runs the workloads that concern it (workload.on); every one is compared with A
// (C with A-gzip). The chart of the ratios is written as SVG with -svg.
//
// Runs are interleaved: each round runs every workload on every configuration, in an order that rotates
// from round to round, so that machine noise hits all of them alike; ratios are taken within a round and
// their median reported. Every run is checked for correctness (statuses, 409s where expected, no 5xx, no
// socket errors); a failed check makes the command exit 1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed wrk/*.lua
var scripts embed.FS

// client keeps its connections: the learning GETs would otherwise leave thousands in TIME_WAIT.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}

// Ids of the documents each workload uses. Writes of different configurations go to disjoint ids: the
// upstream is shared, and a write by A behind B's back would make B's versions stale.
const (
	hotIDs       = 0                 // get-hot: 100 ids
	churnIDs     = 10_000_000        // get-churn: 1M ids
	fillIDs      = 50_000_000        // memory fill: -fill ids
	kib1IDs      = 1_000_000_000_000 // get-1k: the upstream answers ids from here with 1 KiB documents
	kib64IDs     = 2_000_000_000_000 // get-64k: 64 KiB documents
	writeIDs     = 100_000_000       // + config index * writeIDs: put
	contendedIDs = 10_000_000        // + the config's write ids: put-contended
)

type config struct {
	name      string
	directive string // what comes before reverse_proxy in the site block
	baseline  string // the configuration this one is compared with
	idx       int
	redis     bool // the directive names {redis}, the local redis-server's address

	port, admin int
	cmd         *exec.Cmd
	log         string
}

type workload struct {
	name   string
	title  string
	script string
	conns  int
	ids    func(c *config) (base, n int)
	// expected statuses: every response is one of these; must lists those that must appear (in
	// configurations with conflict).
	allowed   map[int]bool
	must409   bool
	noCompare bool
	// on lists the configurations the workload runs on (nil: all).
	on []string
}

// runsOn reports whether w runs on c.
func (w *workload) runsOn(c *config) bool { return w.on == nil || slices.Contains(w.on, c.name) }

// configsOf are the configurations w runs on, in b.configs' order.
func (b *bench) configsOf(w *workload) []*config {
	var cs []*config
	for _, c := range b.configs {
		if w.runsOn(c) {
			cs = append(cs, c)
		}
	}
	return cs
}

// run is one wrk run of one workload on one configuration.
type run struct {
	w     *workload
	c     *config
	round int

	requests                             int
	seconds                              float64
	p50, p90, p99, max                   time.Duration
	connect, read, write, timeout        int
	s200, s204, s409, s4xx, s5xx, sother int
	badProblem                           int
	cpu                                  time.Duration // Caddy process CPU time during the run
	pipeCPU                              time.Duration // CPU time of Caddy, the upstream and wrk
	hwm                                  int64         // Caddy peak RSS during the run, bytes
	rssCumulative                        bool
	load                                 float64
	redisCmds, redisReads                int64 // Redis commands and read events (round trips) during the run
}

func (r *run) rps() float64 { return float64(r.requests) / r.seconds }

func (r *run) cpuPerRequest() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.requests)
}

func (r *run) pipePerRequest() time.Duration {
	if r.requests == 0 {
		return 0
	}
	return r.pipeCPU / time.Duration(r.requests)
}

type options struct {
	smoke      bool
	rounds     int
	duration   time.Duration
	conns      int
	fill       int
	putKeys    int
	caddy      string
	out        string
	cpuprofile string
	keep       bool
	workloads  string
	configs    string
	svg        string
}

func main() {
	var o options
	flag.BoolVar(&o.smoke, "smoke", false, "short runs that only check correctness (for CI)")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds: each runs every workload on every configuration")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "length of one wrk run (whole seconds)")
	flag.IntVar(&o.conns, "c", 32, "wrk connections for the loaded workloads")
	flag.IntVar(&o.fill, "fill", 1_000_000, "distinct keys read through B after the rounds to measure its memory (0: skip)")
	flag.IntVar(&o.putKeys, "put-keys", 10_000, "ids the uncontended PUT workload spreads over")
	flag.StringVar(&o.caddy, "caddy", "", "a Caddy binary with this module (default: go build ./cmd/caddy)")
	flag.StringVar(&o.out, "out", "", "also write the Markdown report to this file")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "directory: in round 1, save a CPU profile of every Caddy during every run")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (Caddy logs, scripts)")
	flag.StringVar(&o.workloads, "workloads", "", "comma-separated workloads to run (default: all)")
	flag.StringVar(&o.configs, "configs", "", "comma-separated configurations to run (default: all; for profiling)")
	flag.StringVar(&o.svg, "svg", "", "also write the chart of the ratios to this SVG file")
	flag.Parse()
	if o.smoke {
		if !isSet("rounds") {
			o.rounds = 1
		}
		if !isSet("duration") {
			o.duration = time.Second
		}
		if !isSet("fill") {
			o.fill = 5_000
		}
		if !isSet("put-keys") {
			o.putKeys = 1000
		}
	}
	if o.duration < time.Second || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench: -duration must be at least 1s and -rounds at least 1")
		os.Exit(2)
	}

	b := &bench{opt: o}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := b.main(ctx)
	stop()
	b.cleanup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

type bench struct {
	opt      options
	dir      string
	root     string
	caddy    string
	upstream *exec.Cmd
	upAddr   string
	configs  []*config
	works    []*workload
	redis    *redisServer
	runs     []*run
	failures []string
	started  time.Time

	fillRun               *run
	fillRSS               int64
	fillMetrics           []string
	loadBefore, loadAfter string
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) main(ctx context.Context) error {
	b.started = time.Now()
	b.loadBefore = loadavg()
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: install the Debian package (apt-get install wrk)")
	}
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || len(bytes.TrimSpace(root)) == 0 || string(bytes.TrimSpace(root)) == os.DevNull {
		return fmt.Errorf("run it inside the caddy-conflict module (go env GOMOD: %v)", err)
	}
	b.root = filepath.Dir(string(bytes.TrimSpace(root)))
	if b.dir, err = os.MkdirTemp("", "conflict-bench-"); err != nil {
		return err
	}
	if err := b.build(ctx); err != nil {
		return err
	}
	if err := b.writeScripts(); err != nil {
		return err
	}
	if err := b.startUpstream(); err != nil {
		return err
	}
	b.setup()
	if slices.ContainsFunc(b.configs, func(c *config) bool { return c.redis }) {
		if err := b.startRedis(); err != nil {
			return err
		}
	}
	for _, c := range b.configs {
		if err := b.startCaddy(ctx, c); err != nil {
			return err
		}
	}
	if err := b.warmUp(ctx); err != nil {
		return err
	}
	b.checkModes()
	for round := 1; round <= b.opt.rounds; round++ {
		for wi, w := range b.works {
			if b.opt.smoke && w.noCompare {
				continue
			}
			cs := b.configsOf(w)
			for i := range cs {
				// Rotate the order from round to round and workload to workload.
				c := cs[(i+round+wi)%len(cs)]
				r, err := b.runWrk(ctx, w, c, round, b.opt.duration, w.conns)
				if err != nil {
					return err
				}
				b.check(r)
				b.runs = append(b.runs, r)
				b.logf("round %d %-13s %-6s %8.0f req/s  p50 %-8s p99 %-8s cpu/req %-7s rss %s  load %.2f",
					round, w.name, c.name, r.rps(), r.p50, r.p99, r.cpuPerRequest(), mib(r.hwm), r.load)
			}
		}
	}
	if b.opt.fill > 0 {
		if err := b.memoryFill(ctx); err != nil {
			return err
		}
	}
	b.loadAfter = loadavg()
	report := b.report()
	fmt.Print(report)
	if b.opt.out != "" {
		if err := os.WriteFile(b.opt.out, []byte(report), 0o644); err != nil {
			return err
		}
	}
	if b.opt.svg != "" || b.opt.smoke {
		if err := b.writeChart(); err != nil {
			return err
		}
	}
	if len(b.failures) > 0 {
		return fmt.Errorf("%d correctness check(s) failed:\n  %s", len(b.failures), strings.Join(b.failures, "\n  "))
	}
	if b.opt.smoke {
		b.logf("smoke: every configuration answered correctly")
	}
	return nil
}

func (b *bench) setup() {
	b.configs = []*config{
		{name: "A"},
		{name: "B", directive: "conflict", baseline: "A"},
		{name: "A-gzip", directive: "encode gzip"},
		{name: "C", directive: "encode gzip\n\tconflict", baseline: "A-gzip"},
		{name: "json", directive: "conflict {\n\t\tversion json /version\n\t}", baseline: "A"},
		{name: "hash", directive: "conflict {\n\t\tversion hash\n\t}", baseline: "A"},
		{name: "history", directive: "conflict {\n\t\thistory 8 16MiB\n\t\tmerge auto\n\t}", baseline: "A"},
		{name: "guards", directive: "conflict {\n\t\tguard parent\n\t\tguard children\n\t\tguard reference /ref /docs/{value}\n\t}", baseline: "A"},
		{name: "redis", directive: "conflict {\n\t\tstore redis {\n\t\t\taddress {redis}\n\t\t}\n\t}", baseline: "A", redis: true},
	}
	for i, c := range b.configs {
		c.idx = i + 1
	}
	if b.opt.configs != "" {
		b.configs = slices.DeleteFunc(b.configs, func(c *config) bool { return !slices.Contains(strings.Split(b.opt.configs, ","), c.name) })
	}
	get := map[int]bool{200: true}
	put := map[int]bool{200: true, 204: true} // 200: the GET that learns a document's first ETag
	classic := []string{"A", "B", "A-gzip", "C"}
	b.works = []*workload{
		{name: "get-hot", title: "GET, 100 hot keys", script: "get.lua", conns: b.opt.conns, allowed: get,
			ids: func(*config) (int, int) { return hotIDs, 100 }},
		{name: "get-hot-1conn", title: "GET, 100 hot keys, 1 connection (latency without queueing)", script: "get.lua", conns: 1,
			allowed: get, noCompare: true, ids: func(*config) (int, int) { return hotIDs, 100 }, on: classic},
		{name: "get-churn", title: "GET, random keys among 1M (cache churn)", script: "churn.lua", conns: b.opt.conns,
			allowed: get, ids: func(*config) (int, int) { return churnIDs, 1_000_000 }, on: append(classic, "redis")},
		{name: "get-1k", title: "GET of 1 KiB JSON documents, 100 hot keys, the version field last", script: "get.lua", conns: b.opt.conns,
			allowed: get, ids: func(*config) (int, int) { return kib1IDs, 100 }, on: []string{"A", "B", "json", "hash"}},
		{name: "get-64k", title: "GET of 64 KiB JSON documents, 100 hot keys, the version field last", script: "get.lua", conns: b.opt.conns,
			allowed: get, ids: func(*config) (int, int) { return kib64IDs, 100 }, on: []string{"A", "B", "json", "hash"}},
		{name: "put", title: fmt.Sprintf("PUT with the current If-Match, %d keys in turn", b.opt.putKeys), script: "put.lua",
			conns: b.opt.conns, allowed: put, ids: func(c *config) (int, int) { return c.idx * writeIDs, b.opt.putKeys },
			on: append(classic, "history", "guards", "redis")},
		{name: "put-contended", title: "PUT with If-Match, 8 keys, retried with the ETag of a 409", script: "put.lua",
			conns: b.opt.conns, must409: true, allowed: map[int]bool{200: true, 204: true, 409: true},
			ids: func(c *config) (int, int) { return c.idx*writeIDs + contendedIDs, 8 }, on: append(classic, "redis")},
	}
	if b.opt.workloads != "" {
		b.works = slices.DeleteFunc(b.works, func(w *workload) bool { return !slices.Contains(strings.Split(b.opt.workloads, ","), w.name) })
	}
}

func (b *bench) build(ctx context.Context) error {
	b.caddy = b.opt.caddy
	if b.caddy == "" {
		b.caddy = filepath.Join(b.dir, "caddy")
		b.logf("go build -o %s ./cmd/caddy", b.caddy)
		if err := goBuild(ctx, b.root, b.caddy, "./cmd/caddy"); err != nil {
			return err
		}
	}
	return goBuild(ctx, b.root, filepath.Join(b.dir, "upstream"), "./bench/cmd/upstream")
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// writeScripts puts common.lua in front of each workload script.
func (b *bench) writeScripts() error {
	common, err := scripts.ReadFile("wrk/common.lua")
	if err != nil {
		return err
	}
	for _, name := range []string{"get.lua", "churn.lua", "put.lua"} {
		s, err := scripts.ReadFile("wrk/" + name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(b.dir, name), slices.Concat(common, []byte("\n"), s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) startUpstream() error {
	cmd := exec.Command(filepath.Join(b.dir, "upstream"), "-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.upstream = cmd
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		return fmt.Errorf("upstream: %s", line)
	}
	b.upAddr = addr
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	b.logf("upstream on %s (pid %d)", addr, cmd.Process.Pid)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (b *bench) startCaddy(ctx context.Context, c *config) error {
	var err error
	if c.port, err = freePort(); err != nil {
		return err
	}
	if c.admin, err = freePort(); err != nil {
		return err
	}
	directive := ""
	if c.directive != "" {
		directive = "\t" + c.directive + "\n"
	}
	if c.redis {
		directive = strings.ReplaceAll(directive, "{redis}", fmt.Sprintf("127.0.0.1:%d", b.redis.port))
	}
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}

http://127.0.0.1:%d {
%s	reverse_proxy %s
}
`, c.admin, c.port, directive, b.upAddr)
	file := filepath.Join(b.dir, c.name+".caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o644); err != nil {
		return err
	}
	c.log = filepath.Join(b.dir, c.name+".log")
	logf, err := os.Create(c.log)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(b.caddy, "run", "--config", file, "--adapter", "caddyfile")
	cmd.Dir = b.dir
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(b.dir, "xdg"), "XDG_DATA_HOME="+filepath.Join(b.dir, "xdg"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	c.cmd = cmd
	url := fmt.Sprintf("http://127.0.0.1:%d/docs/1", c.port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("caddy %s did not answer on %s: %v\n%s", c.name, url, err, tail(c.log))
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.logf("caddy %-6s on 127.0.0.1:%d (admin %d, pid %d)", c.name, c.port, c.admin, cmd.Process.Pid)
	return nil
}

// warmUp gives every Caddy a second of load and reads every document of the PUT workloads once
// through it: the proxy learns their versions, and the ETags go into the state file the Lua script
// starts from, so that the measured PUT runs are PUTs with the right If-Match from their first request.
func (b *bench) warmUp(ctx context.Context) error {
	for _, c := range b.configs {
		for _, w := range b.works {
			if !w.runsOn(c) {
				continue
			}
			switch {
			case w.name == "get-hot":
				r, err := b.runWrk(ctx, w, c, 0, time.Second, w.conns)
				if err != nil {
					return err
				}
				b.check(r)
			case w.script == "put.lua":
				if err := b.learn(ctx, w, c); err != nil {
					return err
				}
			}
		}
	}
	b.logf("warmed up")
	return nil
}

// learn GETs the documents of a PUT workload through c and writes their ETags to the state file.
func (b *bench) learn(ctx context.Context, w *workload, c *config) error {
	base, n := w.ids(c)
	tags := make([]string, n)
	errs := make(chan error, 16)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range n {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	for range 16 {
		go func() {
			var err error
			for i := range next {
				if err != nil {
					continue
				}
				var resp *http.Response
				resp, err = client.Get(fmt.Sprintf("http://127.0.0.1:%d/docs/%d", c.port, base+i))
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if tags[i] = resp.Header.Get("ETag"); resp.StatusCode != http.StatusOK || tags[i] == "" {
					err = fmt.Errorf("learn: GET %s /docs/%d: %s, ETag %q", c.name, base+i, resp.Status, tags[i])
				}
			}
			errs <- err
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	for i, tag := range tags {
		// "<id>-<version>" (-gzip): the Lua script keeps the newest version of each id.
		_, v, _ := strings.Cut(strings.Trim(tag, `"`), "-")
		v, _, _ = strings.Cut(v, "-")
		fmt.Fprintf(&buf, "%d\t%s\t%s\n", base+i, v, tag)
	}
	return os.WriteFile(b.stateFile(w, c), buf.Bytes(), 0o644)
}

func (b *bench) stateFile(w *workload, c *config) string {
	return filepath.Join(b.dir, fmt.Sprintf("etags-%s-%s.tsv", w.name, c.name))
}

func (b *bench) runWrk(ctx context.Context, w *workload, c *config, round int, d time.Duration, conns int) (*run, error) {
	return b.runWrkFrom(ctx, w, c, round, d, conns, true)
}

// runWrkFrom runs wrk once; resetRSS false keeps the peak RSS of the previous run.
func (b *bench) runWrkFrom(ctx context.Context, w *workload, c *config, round int, d time.Duration, conns int, resetRSS bool) (*run, error) {
	base, n := w.ids(c)
	r := &run{w: w, c: c, round: round}
	pid := c.cmd.Process.Pid
	if resetRSS {
		r.rssCumulative = !resetPeakRSS(pid)
	}
	cpu0, up0 := cpuTime(pid), cpuTime(b.upstream.Process.Pid)
	var redis0 redisStats
	var redisCPU0 time.Duration
	if c.redis {
		redis0, redisCPU0 = b.redis.stats(), cpuTime(b.redis.cmd.Process.Pid)
	}

	var profile chan error
	if b.opt.cpuprofile != "" && round == 1 {
		profile = make(chan error, 1)
		go func() {
			profile <- b.cpuProfile(c, w, max(1, int(d.Seconds())-1))
		}()
	}
	seed := time.Now().UnixNano() % 1_000_000_007
	args := []string{"-t1", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", int(d.Seconds())), "--timeout", "10s",
		"-s", filepath.Join(b.dir, w.script), fmt.Sprintf("http://127.0.0.1:%d", c.port), "--",
		strconv.Itoa(base), strconv.Itoa(n), strconv.FormatInt(seed, 10), b.stateFile(w, c)}
	wrk := exec.CommandContext(ctx, "wrk", args...)
	out, err := wrk.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	r.cpu = cpuTime(pid) - cpu0
	r.pipeCPU = r.cpu + cpuTime(b.upstream.Process.Pid) - up0 + wrk.ProcessState.UserTime() + wrk.ProcessState.SystemTime()
	if c.redis {
		// Redis is part of what this configuration costs; its own INFO call is one command of each count.
		s := b.redis.stats()
		r.redisCmds, r.redisReads = s.commands-redis0.commands-1, s.reads-redis0.reads-1
		r.pipeCPU += cpuTime(b.redis.cmd.Process.Pid) - redisCPU0
	}
	r.hwm = peakRSS(pid)
	r.load = loadavgValue()
	if profile != nil {
		if err := <-profile; err != nil {
			b.logf("cpu profile of %s %s: %v", c.name, w.name, err)
		}
	}
	line := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "BENCH ") {
			line = l
		}
	}
	if line == "" {
		return nil, fmt.Errorf("wrk %s printed no summary:\n%s", strings.Join(args, " "), out)
	}
	fields := map[string]int64{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(f, "=")
		fields[k], _ = strconv.ParseInt(v, 10, 64)
	}
	us := func(k string) time.Duration { return time.Duration(fields[k]) * time.Microsecond }
	r.requests = int(fields["requests"])
	r.seconds = float64(fields["duration_us"]) / 1e6
	r.p50, r.p90, r.p99, r.max = us("p50_us"), us("p90_us"), us("p99_us"), us("max_us")
	r.connect, r.read, r.write, r.timeout = int(fields["connect"]), int(fields["read"]), int(fields["write"]), int(fields["timeout"])
	r.s200, r.s204, r.s409 = int(fields["s200"]), int(fields["s204"]), int(fields["s409"])
	r.s4xx, r.s5xx, r.sother = int(fields["s4xx"]), int(fields["s5xx"]), int(fields["sother"])
	r.badProblem = int(fields["bad_problem"])
	return r, nil
}

func (b *bench) cpuProfile(c *config, w *workload, seconds int) error {
	if err := os.MkdirAll(b.opt.cpuprofile, 0o755); err != nil {
		return err
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", c.admin, seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof: %s", resp.Status)
	}
	f, err := os.Create(filepath.Join(b.opt.cpuprofile, fmt.Sprintf("%s-%s.pprof", w.name, c.name)))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// check records what a user would notice as wrong in a run: unexpected statuses, 5xx, socket errors,
// a 409 to a write with the right ETag (a false rejection), or no 409 where writes contend.
func (b *bench) check(r *run) {
	fail := func(format string, args ...any) {
		where := fmt.Sprintf("%s on %s (round %d)", r.w.name, r.c.name, r.round)
		b.failures = append(b.failures, where+": "+fmt.Sprintf(format, args...))
	}
	switch {
	case r.requests == 0:
		fail("no response at all")
		return
	case r.connect+r.read+r.write+r.timeout > 0:
		fail("socket errors: connect %d, read %d, write %d, timeout %d", r.connect, r.read, r.write, r.timeout)
	}
	if r.s5xx > 0 {
		fail("%d responses 5xx", r.s5xx)
	}
	if r.s4xx+r.sother > 0 {
		fail("%d responses with another 4xx, %d with another status", r.s4xx, r.sother)
	}
	if r.s204 > 0 && !r.w.allowed[204] {
		fail("%d responses 204 to GETs", r.s204)
	}
	if r.s409 > 0 && (!r.w.allowed[409] || r.c.directive == "" || !strings.Contains(r.c.directive, "conflict")) {
		fail("%d responses 409 although every write carried the current ETag (false rejections)", r.s409)
	}
	if r.badProblem > 0 {
		fail("%d responses 409 without Content-Type application/problem+json", r.badProblem)
	}
	if r.w.script == "put.lua" && r.round > 0 && r.s204 == 0 {
		fail("no write succeeded (no 204)")
	}
	if r.w.must409 && r.round > 0 && strings.Contains(r.c.directive, "conflict") && r.s409 == 0 {
		fail("no 409 although %d connections wrote 8 documents at once", r.w.conns)
	}
}

// memoryFill reads -fill distinct keys through B, each once, and records B's peak RSS: the version
// table must stay within cache_size whatever the number of keys.
func (b *bench) memoryFill(ctx context.Context) error {
	c := b.config("B")
	if c == nil {
		return nil
	}
	b.logf("memory: reading %d distinct keys through B", b.opt.fill)
	// wrk runs for a time, not a number of requests: walk the ids in chunks until enough were read.
	total := &run{w: &workload{name: "fill"}, c: c, round: -1}
	resetPeakRSS(c.cmd.Process.Pid)
	chunk := 2 * time.Second
	for total.requests < b.opt.fill {
		base := fillIDs + total.requests
		w := &workload{name: "fill", script: "get.lua", conns: b.opt.conns, allowed: map[int]bool{200: true},
			ids: func(*config) (int, int) { return base, 1 << 40 }}
		r, err := b.runWrkFrom(ctx, w, c, -1, chunk, w.conns, false)
		if err != nil {
			return err
		}
		b.check(r)
		b.logf("memory: %d keys read, B peak RSS %s", total.requests+r.requests, mib(r.hwm))
		total.requests += r.requests
		total.seconds += r.seconds
		total.hwm = r.hwm
		left := time.Duration(float64(b.opt.fill-total.requests) / r.rps() * float64(time.Second))
		chunk = min(max(left+time.Second, time.Second), 30*time.Second).Truncate(time.Second)
	}
	r := total
	b.fillRun = r
	b.fillRSS = rss(c.cmd.Process.Pid)
	b.logf("memory: %d requests at %.0f req/s, B peak RSS %s, RSS now %s", r.requests, r.rps(), mib(r.hwm), mib(b.fillRSS))
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", c.admin)); err == nil {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "caddy_conflict_store") || strings.HasPrefix(l, "caddy_conflict_cache") {
				b.fillMetrics = append(b.fillMetrics, l)
			}
		}
		resp.Body.Close()
	}
	return nil
}

func (b *bench) cleanup() {
	for _, c := range b.configs {
		if c.cmd != nil && c.cmd.Process != nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	}
	if b.upstream != nil && b.upstream.Process != nil {
		_ = b.upstream.Process.Kill()
		_ = b.upstream.Wait()
	}
	b.redis.stop()
	if b.dir != "" {
		if b.opt.keep || len(b.failures) > 0 {
			fmt.Fprintf(os.Stderr, "bench: logs and scripts kept in %s\n", b.dir)
		} else {
			os.RemoveAll(b.dir)
		}
	}
}

// --- /proc ----------------------------------------------------------------------------------------

// resetPeakRSS resets VmHWM (Linux 4.0+: writing 5 to clear_refs), so that each run has its own peak.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

func statusKiB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func peakRSS(pid int) int64 { return statusKiB(pid, "VmHWM") << 10 }
func rss(pid int) int64     { return statusKiB(pid, "VmRSS") << 10 }

// cpuTime is the user+system CPU time of a process (clock ticks of 10ms).
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func loadavgValue() float64 {
	v, _ := strconv.ParseFloat(strings.Fields(loadavg() + " ")[0], 64)
	return v
}

func tail(file string) string {
	data, _ := os.ReadFile(file)
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}

// --- report ---------------------------------------------------------------------------------------

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d float64) string { return fmt.Sprintf("%.0f µs", d) }

func (b *bench) config(name string) *config {
	for _, c := range b.configs {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (b *bench) workload(name string) *workload {
	for _, w := range b.works {
		if w.name == name {
			return w
		}
	}
	return nil
}

func (b *bench) find(w *workload, c string, round int) *run {
	for _, r := range b.runs {
		if r.w == w && r.c.name == c && r.round == round {
			return r
		}
	}
	return nil
}

func (b *bench) series(w *workload, c string, f func(*run) float64) []float64 {
	var xs []float64
	for _, r := range b.runs {
		if r.w == w && r.c.name == c {
			xs = append(xs, f(r))
		}
	}
	return xs
}

// pairs are f(run of c, run of its baseline) within each round.
func (b *bench) pairs(w *workload, c *config, f func(x, base *run) float64) []float64 {
	var xs []float64
	for round := 1; round <= b.opt.rounds; round++ {
		x, base := b.find(w, c.name, round), b.find(w, c.baseline, round)
		if x != nil && base != nil {
			xs = append(xs, f(x, base))
		}
	}
	return xs
}

// paired is the median over rounds of f(run of c, run of its baseline) within the same round.
func (b *bench) paired(w *workload, c *config, f func(x, base *run) float64) float64 {
	return median(b.pairs(w, c, f))
}

// spread is the median and the range of the per-round ratios.
func (b *bench) spread(w *workload, c *config, f func(x, base *run) float64) string {
	xs := b.pairs(w, c, f)
	if len(xs) < 2 {
		return fmt.Sprintf("%.3f", median(xs))
	}
	return fmt.Sprintf("%.3f (%.2f–%.2f)", median(xs), slices.Min(xs), slices.Max(xs))
}

func (b *bench) peak(w *workload, c string) int64 {
	var m int64
	for _, r := range b.runs {
		if r.w == w && r.c.name == c {
			m = max(m, r.hwm)
		}
	}
	return m
}

func (b *bench) report() string {
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	mode := "full"
	if b.opt.smoke {
		mode = "smoke (correctness only: these numbers are not measurements)"
	}
	p("## Results (%s)\n\n", mode)
	p("- command: `go run ./bench %s`\n", strings.Join(os.Args[1:], " "))
	p("- %d rounds of %s per run; wrk -t1 -c%d (get-hot-1conn: -c1), every workload on every configuration in each round, order rotating\n",
		b.opt.rounds, b.opt.duration, b.opt.conns)
	p("- machine: %d CPUs (%s), %s, Linux %s; %s; %s; %s\n", runtime.NumCPU(), cpuModel(), goVersion(), osRelease(), caddyVersion(b.caddy), wrkVersion(), "no CPU pinning")
	p("- load average before %s, after %s; wall time %s\n\n", b.loadBefore, b.loadAfter, time.Since(b.started).Round(time.Second))
	p("Medians over the rounds. Caddy CPU/req is the Caddy process's CPU time (user+system) divided by the requests it served;\n")
	p("all CPU/req adds the upstream's and wrk's;\n")
	p("peak RSS is the Caddy process's VmHWM during the run (reset before each run).\n\n")
	p("| workload | config | req/s | p50 | p99 | Caddy CPU/req | all CPU/req | peak RSS | statuses |\n")
	p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, w := range b.works {
		for _, c := range b.configs {
			rps := b.series(w, c.name, func(r *run) float64 { return r.rps() })
			if len(rps) == 0 {
				continue
			}
			p50 := b.series(w, c.name, func(r *run) float64 { return float64(r.p50.Microseconds()) })
			p99 := b.series(w, c.name, func(r *run) float64 { return float64(r.p99.Microseconds()) })
			cpu := b.series(w, c.name, func(r *run) float64 { return float64(r.cpuPerRequest().Nanoseconds()) / 1e3 })
			pipe := b.series(w, c.name, func(r *run) float64 { return float64(r.pipePerRequest().Nanoseconds()) / 1e3 })
			var st [3]int
			for _, r := range b.runs {
				if r.w == w && r.c.name == c.name {
					st[0] += r.s200
					st[1] += r.s204
					st[2] += r.s409
				}
			}
			p("| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", w.name, c.name, median(rps), us(median(p50)), us(median(p99)),
				us(median(cpu)), us(median(pipe)), mib(b.peak(w, c.name)), statuses(st))
		}
	}
	b.ratioTable(p)
	if churn := b.workload("get-churn"); b.fillRun != nil && churn != nil {
		base := b.peak(churn, "A")
		p("\nMemory: %d distinct keys read once each through B (default cache_size 64 MiB) at %.0f req/s: B peak RSS %s "+
			"(RSS at the end %s); A's peak RSS under get-churn %s; difference %s.\n",
			b.fillRun.requests, b.fillRun.rps(), mib(b.fillRun.hwm), mib(b.fillRSS), mib(base), mib(b.fillRun.hwm-base))
		for _, l := range b.fillMetrics {
			p("    %s\n", l)
		}
	}
	if len(b.failures) > 0 {
		p("\nCorrectness checks FAILED:\n\n")
		for _, f := range b.failures {
			p("- %s\n", f)
		}
	} else {
		p("\nCorrectness: every run answered only with the expected statuses (GET 200; PUT 204, 409 only where writes contend\n")
		p("and only with conflict; every 409 a problem+json), no 5xx, no socket errors.\n")
	}
	return s.String()
}

func statuses(st [3]int) string {
	var parts []string
	for i, code := range []string{"200", "204", "409"} {
		if st[i] > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", code, st[i]))
		}
	}
	return strings.Join(parts, " ")
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func osRelease() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

func caddyVersion(bin string) string {
	out, _ := exec.Command(bin, "version").Output()
	return "Caddy " + strings.Fields(string(out) + " ?")[0]
}

func wrkVersion() string {
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	f := strings.Fields(string(out) + " ? ?")
	return f[0] + " " + f[1]
}
