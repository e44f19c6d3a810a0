package main

import (
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ratio is one row of the comparison: a workload on a configuration against its baseline, medians over
// rounds of the ratios taken within each round.
type ratio struct {
	w                 *workload
	c                 *config
	rps, cpu, all     float64 // throughput, Caddy CPU per request and all CPU per request, baseline = 1
	rpsLow, rpsHigh   float64
	cpuLow, cpuHigh   float64
	d50, d99, dcpu    float64 // differences in µs
	target            float64 // the target for this row (0: none)
	targetBy, comment string
}

func (b *bench) ratios() []ratio {
	rps := func(x, base *run) float64 { return x.rps() / base.rps() }
	cpu := func(x, base *run) float64 { return float64(base.cpuPerRequest()) / float64(x.cpuPerRequest()) }
	// With every core busy, throughput is the CPU there is divided by the CPU a request takes: the ratio
	// of CPU per request (Caddy + upstream + wrk, + Redis) estimates it without the noise of what else runs.
	all := func(x, base *run) float64 { return float64(base.pipePerRequest()) / float64(x.pipePerRequest()) }
	d50 := func(x, base *run) float64 { return float64((x.p50 - base.p50).Microseconds()) }
	d99 := func(x, base *run) float64 { return float64((x.p99 - base.p99).Microseconds()) }
	dcpu := func(x, base *run) float64 {
		return float64((x.cpuPerRequest() - base.cpuPerRequest()).Nanoseconds()) / 1e3
	}
	var rs []ratio
	for _, w := range b.works {
		if w.noCompare {
			continue
		}
		for _, c := range b.configsOf(w) {
			if c.baseline == "" || b.config(c.baseline) == nil {
				continue
			}
			xs, cs := b.pairs(w, c, rps), b.pairs(w, c, cpu)
			if len(xs) == 0 {
				continue
			}
			r := ratio{w: w, c: c, rps: median(xs), rpsLow: slices.Min(xs), rpsHigh: slices.Max(xs),
				cpu: median(cs), cpuLow: slices.Min(cs), cpuHigh: slices.Max(cs), all: b.paired(w, c, all),
				d50: b.paired(w, c, d50), d99: b.paired(w, c, d99), dcpu: b.paired(w, c, dcpu)}
			r.target, r.targetBy = target(w, c)
			rs = append(rs, r)
		}
	}
	return rs
}

// target is issue 18's target for a row: every GET mode ≥ 0.95 at 1 KiB (and the ~620-byte documents),
// ≥ 0.90 at 64 KiB, by throughput and by CPU per request; PUT ≥ 0.95 by CPU, with history and merge
// auto ≥ 0.90.
func target(w *workload, c *config) (float64, string) {
	switch {
	case w.must409:
		return 0, "" // contended writes: most answers are 409s, no target
	case w.script == "put.lua" && c.name == "history":
		return 0.90, "CPU"
	case w.script == "put.lua":
		return 0.95, "CPU"
	case w.name == "get-64k":
		return 0.90, "req/s and CPU"
	}
	return 0.95, "req/s and CPU"
}

func (b *bench) ratioTable(p func(string, ...any)) {
	p("\nRatios within each round, median over rounds (range over rounds in brackets); every configuration against\n")
	p("A (reverse_proxy alone), C against A-gzip. \"by Caddy CPU\" is the baseline's Caddy CPU per request divided by\n")
	p("the configuration's; \"by all CPU\" counts the upstream, wrk (and Redis) too: what the throughput ratio would be\n")
	p("on cores busy with nothing else.\n\n")
	p("| workload | config | vs | req/s ratio | by Caddy CPU | by all CPU | Δ p50 | Δ p99 | Δ Caddy CPU/req | target |\n")
	p("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range b.ratios() {
		t := ""
		if r.target > 0 {
			t = fmt.Sprintf("≥ %.2f by %s", r.target, r.targetBy)
		}
		p("| %s | %s | %s | %.3f (%.2f–%.2f) | %.3f (%.2f–%.2f) | %.3f | %s | %s | %s | %s |\n", r.w.name, r.c.name, r.c.baseline,
			r.rps, r.rpsLow, r.rpsHigh, r.cpu, r.cpuLow, r.cpuHigh, r.all, us(r.d50), us(r.d99), us(r.dcpu), t)
	}
	// Under contention, B and C answer most writes with a quick 409: compare the writes that succeeded.
	writes := func(x, base *run) float64 { return float64(x.s204) / x.seconds / (float64(base.s204) / base.seconds) }
	for _, w := range b.works {
		if !w.must409 {
			continue
		}
		for _, c := range b.configsOf(w) {
			if c.baseline != "" && strings.Contains(c.directive, "conflict") {
				p("| %s, successful writes (204) per second | %s | %s | %s | | | | | | |\n", w.name, c.name, c.baseline, b.spread(w, c, writes))
			}
		}
	}
	if b.redis == nil {
		return
	}
	p("\nRedis per request through the redis configuration (median over rounds): commands Redis processed (the calls\n")
	p("inside its Lua scripts count too), and its read events, which count round trips (a pipeline arriving in one\n")
	p("piece is one); the node's background work (lease renewals, the watcher) is included.\n\n")
	p("| workload | Redis commands/req | Redis round trips/req |\n| --- | ---: | ---: |\n")
	for _, w := range b.works {
		c := b.config("redis")
		if c == nil || !w.runsOn(c) {
			continue
		}
		cmds := b.series(w, c.name, func(r *run) float64 { return float64(r.redisCmds) / float64(max(r.requests, 1)) })
		reads := b.series(w, c.name, func(r *run) float64 { return float64(r.redisReads) / float64(max(r.requests, 1)) })
		if len(cmds) > 0 {
			p("| %s | %.3f | %.3f |\n", w.name, median(cmds), median(reads))
		}
	}
}

// writeChart writes the ratios as a hand-written SVG bar chart: per row, throughput and Caddy CPU per
// request against the baseline (1.0), with the range over rounds and the row's target. In smoke mode
// it goes to the temporary directory unless -svg names a file, and is checked to be well-formed XML.
func (b *bench) writeChart() error {
	out := b.opt.svg
	if out == "" {
		out = filepath.Join(b.dir, "ratios.svg")
	}
	svg := chartSVG(b.ratios(), b.opt.smoke)
	dec := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("chart: not well-formed SVG: %v", err)
		}
	}
	if err := os.WriteFile(out, []byte(svg), 0o644); err != nil {
		return err
	}
	b.logf("chart of the ratios: %s", out)
	return nil
}

func chartSVG(rs []ratio, smoke bool) string {
	const (
		left, right, top, rowH, barH = 190.0, 50.0, 56.0, 34.0, 11.0
		plotW                        = 560.0
		width                        = left + plotW + right
	)
	hi := 1.2
	for _, r := range rs {
		hi = max(hi, r.rpsHigh, r.cpuHigh)
	}
	hi = math.Min(math.Ceil(hi*10)/10, 2.0)
	x := func(v float64) float64 { return left + plotW*math.Min(max(v, 0), hi)/hi }
	height := top + rowH*float64(len(rs)) + 40
	var s strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&s, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	title := "caddy-conflict against reverse_proxy alone (1.0): median over rounds, bars show the range"
	if smoke {
		title = "smoke run: correctness only, these bars are not measurements"
	}
	p(`<text x="%.0f" y="18" font-size="14" font-weight="bold">%s</text>`+"\n", left-180, esc(title))
	p(`<rect x="%.0f" y="28" width="12" height="10" fill="#3b78c2"/><text x="%.0f" y="37">throughput (req/s)</text>`+"\n", left, left+16)
	p(`<rect x="%.0f" y="28" width="12" height="10" fill="#e08a2c"/><text x="%.0f" y="37">by Caddy CPU per request</text>`+"\n", left+150, left+166)
	p(`<line x1="%.0f" y1="33" x2="%.0f" y2="33" stroke="#c0392b" stroke-width="2" stroke-dasharray="4 3"/><text x="%.0f" y="37">target</text>`+"\n",
		left+340, left+370, left+376)
	bottom := top + rowH*float64(len(rs))
	for v := 0.0; v <= hi+1e-9; v += 0.1 {
		stroke, w := "#e4e4e4", 1.0
		if math.Abs(v-1) < 1e-9 {
			stroke, w = "#333", 1.5
		}
		p(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="%s" stroke-width="%.1f"/>`+"\n", x(v), top-6, x(v), bottom, stroke, w)
		if math.Mod(math.Round(v*10), 2) == 0 {
			p(`<text x="%.1f" y="%.0f" text-anchor="middle" fill="#555">%.1f</text>`+"\n", x(v), bottom+16, v)
		}
	}
	for i, r := range rs {
		y := top + rowH*float64(i)
		p(`<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-8, y+barH+5, esc(r.w.name+" · "+r.c.name))
		for j, bar := range [][3]float64{{r.rps, r.rpsLow, r.rpsHigh}, {r.cpu, r.cpuLow, r.cpuHigh}} {
			color := []string{"#3b78c2", "#e08a2c"}[j]
			by := y + float64(j)*(barH+2)
			p(`<rect x="%.0f" y="%.1f" width="%.1f" height="%.0f" fill="%s"><title>%s</title></rect>`+"\n", left, by, x(bar[0])-left, barH, color,
				esc(fmt.Sprintf("%s on %s vs %s: %.3f (%.2f–%.2f)", r.w.name, r.c.name, r.c.baseline, bar[0], bar[1], bar[2])))
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#222"/>`+"\n", x(bar[1]), by+barH/2, x(bar[2]), by+barH/2)
			p(`<text x="%.1f" y="%.1f" font-size="10" fill="#222">%.2f</text>`+"\n", x(bar[2])+4, by+barH-1, bar[0])
		}
		if r.target > 0 {
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c0392b" stroke-width="2" stroke-dasharray="4 3"/>`+"\n",
				x(r.target), y-2, x(r.target), y+2*barH+4)
		}
	}
	p(`<text x="%.0f" y="%.0f" fill="#555" font-size="11">ratio to the baseline (higher is better; the target applies by %s)</text>`+"\n",
		left, bottom+32, "req/s and CPU for GETs, CPU for PUTs")
	p("</svg>\n")
	return s.String()
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
