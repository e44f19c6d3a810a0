package caddyconflict

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-conflict/caddy-conflict/conflict"
	"github.com/caddy-conflict/caddy-conflict/versioncache"
)

// Prometheus metrics (caddy_conflict_*). The collectors are created once per
// process and registered into the registry of every configuration that
// provisions a handler: a reload gets a new registry, and registering the same
// collectors again keeps their counts. Labels take values from fixed sets
// only (outcomes, statuses in `normalize`, reread reasons); never keys,
// versions or client addresses.
var metrics = struct {
	decisions        *prometheus.CounterVec
	upstreamProblems *prometheus.CounterVec
	lockWait         prometheus.Histogram
	rereads          *prometheus.CounterVec
	storeErrors      *prometheus.CounterVec
	store            *storeCollector
}{
	decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "conflict", Name: "decisions_total",
		Help: "Guarded writes by outcome: forwarded, merged (merge auto), reported (mode report), refused (verify's read was refused: the client got the upstream's answer), or the kind of rejection.",
	}, []string{"outcome"}),
	upstreamProblems: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "conflict", Name: "upstream_problems_total",
		Help: "Upstream responses rewritten into problem documents, by status.",
	}, []string{"status"}),
	lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy", Subsystem: "conflict", Name: "lock_wait_seconds",
		Help:    "Time a write waited for its key's write claim.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 2.5, 5, 10, 30},
	}),
	rereads: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "conflict", Name: "rereads_total",
		Help: "Versions re-read from the upstream before deciding a write, by reason (uncertain, preflight, verify) and result (ok, failed).",
	}, []string{"reason", "result"}),
	storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy", Subsystem: "conflict", Name: "store_errors_total",
		Help: "Writes that met an unreachable version store, by what happened to them (rejected, forwarded).",
	}, []string{"action"}),
	store: newStoreCollector(),
}

// metricsEnabled turns counting off; only benchmarks change it, to measure
// what the metrics cost.
var metricsEnabled = true

// setMetricsEnabled sets metricsEnabled and returns a func restoring it.
func setMetricsEnabled(on bool) (restore func()) {
	old := metricsEnabled
	metricsEnabled = on
	return func() { metricsEnabled = old }
}

func init() {
	// Series that exist from the start, so that rates and alerts work
	// before the first event.
	for _, o := range []string{"forwarded", "merged", "reported", "refused",
		string(conflict.KindStaleVersion), string(conflict.KindDeleted), string(conflict.KindAlreadyExists),
		string(conflict.KindPreconditionRequired), string(conflict.KindWriteInProgress),
		string(conflict.KindInvalidPrecondition), string(conflict.KindUpstreamUnavailable),
		string(conflict.KindStoreUnavailable), string(conflict.KindParentMissing), string(conflict.KindNotEmpty),
		string(conflict.KindReferenceMissing), string(conflict.KindInvalidBody), string(conflict.KindBodyTooLarge)} {
		decisionCounters[o] = metrics.decisions.WithLabelValues(o)
	}
	for _, reason := range []string{rereadUncertain, rereadPreflight, rereadVerify} {
		metrics.rereads.WithLabelValues(reason, "ok")
		metrics.rereads.WithLabelValues(reason, "failed")
	}
}

// registerMetrics adds the collectors to a configuration's registry. The
// same collectors are registered again on every provision (several
// handlers, reloads): AlreadyRegisteredError with our own collector means
// they are there already. The existing collector is never swapped in,
// since handlers of the running configuration count into ours concurrently;
// another collector under our names is a real conflict.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.decisions, metrics.upstreamProblems, metrics.lockWait,
		metrics.rereads, metrics.storeErrors, metrics.store} {
		err := reg.Register(c)
		var are prometheus.AlreadyRegisteredError
		if err == nil || errors.As(err, &are) && are.ExistingCollector == c {
			continue
		}
		return fmt.Errorf("conflict: metrics: %w", err)
	}
	return nil
}

// decisionCounters holds the series of the outcomes known at start, so
// that counting one is an atomic add without hashing labels; it is not
// changed after init.
var decisionCounters = map[string]prometheus.Counter{}

// countDecision counts a guarded write's outcome: "forwarded", "reported"
// or a rejection kind.
func countDecision(outcome string) {
	if !metricsEnabled {
		return
	}
	if c, ok := decisionCounters[outcome]; ok {
		c.Inc()
		return
	}
	metrics.decisions.WithLabelValues(outcome).Inc()
}

// countUpstreamProblem counts an upstream response rewritten into a
// problem document; status is one of the `normalize` statuses (400-599).
func countUpstreamProblem(status int) {
	if metricsEnabled {
		metrics.upstreamProblems.WithLabelValues(strconv.Itoa(status)).Inc()
	}
}

// countReread counts a read of the upstream made before deciding a write,
// by reason and whether it told the proxy what it asked (ok).
func countReread(reason string, ok bool) {
	if !metricsEnabled {
		return
	}
	result := "ok"
	if !ok {
		result = "failed"
	}
	metrics.rereads.WithLabelValues(reason, result).Inc()
}

// observeLockWait records how long a write waited for its key's claim,
// since start.
func observeLockWait(start time.Time) {
	if metricsEnabled {
		metrics.lockWait.Observe(time.Since(start).Seconds())
	}
}

// countStoreError counts a write that met a store error and what was done
// with it: "rejected" or "forwarded".
func countStoreError(action string) {
	if metricsEnabled {
		metrics.storeErrors.WithLabelValues(action).Inc()
	}
}

// storeCollector reports the counters of the open version tables, read
// when /metrics is scraped. Tables shared across a reload keep counting;
// the sums drop (a counter reset to Prometheus) only when a table is
// closed, e.g. after cache_size changed.
type storeCollector struct {
	hits, misses, evictions, expirations, rejections, entries, bytes, maxBytes *prometheus.Desc
}

func newStoreCollector() *storeCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("caddy", "conflict", name), help, nil, nil)
	}
	return &storeCollector{
		hits:        desc("store_hits_total", "Version table lookups that found the key."),
		misses:      desc("store_misses_total", "Version table lookups that did not find the key."),
		evictions:   desc("store_evictions_total", "Version table entries removed to make room."),
		expirations: desc("store_expirations_total", "Version table entries removed because their ttl passed."),
		rejections:  desc("store_rejections_total", "Versions the table did not keep (admission policy, load)."),
		entries:     desc("store_entries", "Keys held in the version tables."),
		bytes:       desc("store_bytes", "Estimated memory used by the version tables."),
		maxBytes:    desc("store_max_bytes", "Memory bound of the version tables (cache_size)."),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hits, c.misses, c.evictions, c.expirations, c.rejections,
		c.entries, c.bytes, c.maxBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	var sum versioncache.Stats
	for _, s := range openStores() {
		st := s.Stats()
		sum.Hits += st.Hits
		sum.Misses += st.Misses
		sum.Evictions += st.Evictions
		sum.Expirations += st.Expirations
		sum.Rejections += st.Rejections
		sum.Entries += st.Entries
		sum.Bytes += st.Bytes
		sum.MaxBytes += st.MaxBytes
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(c.hits, sum.Hits)
	counter(c.misses, sum.Misses)
	counter(c.evictions, sum.Evictions)
	counter(c.expirations, sum.Expirations)
	counter(c.rejections, sum.Rejections)
	gauge(c.entries, float64(sum.Entries))
	gauge(c.bytes, float64(sum.Bytes))
	gauge(c.maxBytes, float64(sum.MaxBytes))
}

// Interface guard
var _ prometheus.Collector = (*storeCollector)(nil)
