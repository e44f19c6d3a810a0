package caddyconflict

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A reload provisions handlers into a new registry while the old one is
// still in use, and one config may hold several handlers: registering
// again must neither fail nor reset the counts.
func TestRegisterMetricsAgain(t *testing.T) {
	old, next := prometheus.NewPedanticRegistry(), prometheus.NewPedanticRegistry()
	for _, reg := range []*prometheus.Registry{old, old, next, next} {
		if err := registerMetrics(reg); err != nil {
			t.Fatalf("register: %v", err)
		}
	}
	if err := registerMetrics(nil); err != nil {
		t.Fatalf("nil registry: %v", err)
	}
	forwarded := metrics.decisions.WithLabelValues("forwarded")
	before := testutil.ToFloat64(forwarded)
	countDecision("forwarded")
	if got := testutil.ToFloat64(forwarded); got != before+1 {
		t.Errorf("forwarded = %v, want %v", got, before+1)
	}
	decisions := testutil.CollectAndCount(metrics.decisions)
	for _, reg := range []*prometheus.Registry{old, next} {
		// The pedantic registry checks Describe against Collect.
		if n, err := testutil.GatherAndCount(reg, "caddy_conflict_decisions_total"); err != nil || n != decisions {
			t.Errorf("decisions: %d series gathered (%v), want the collector's %d", n, err, decisions)
		}
		for _, name := range []string{"caddy_conflict_rereads_total", "caddy_conflict_lock_wait_seconds",
			"caddy_conflict_store_entries", "caddy_conflict_store_hits_total"} {
			if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
				t.Errorf("%s not gathered (%v)", name, err)
			}
		}
	}
}

// Another collector under one of our names is a real conflict, reported
// instead of being silently shadowed.
func TestRegisterMetricsConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "caddy_conflict_decisions_total", Help: "someone else's",
	}, []string{"outcome"}))
	if err := registerMetrics(reg); err == nil {
		t.Fatal("no error for a foreign collector with the same name")
	}
}
