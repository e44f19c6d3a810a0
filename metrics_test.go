package caddyconflict

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
	var m dto.Metric
	if err := metrics.decisions.WithLabelValues("forwarded").Write(&m); err != nil {
		t.Fatal(err)
	}
	before := m.GetCounter().GetValue()
	countDecision("forwarded")
	for _, reg := range []*prometheus.Registry{old, next} {
		families, err := reg.Gather() // the pedantic registry checks Describe against Collect
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		var names []string
		for _, f := range families {
			names = append(names, f.GetName())
			if f.GetName() != "caddy_conflict_decisions_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == "forwarded" && m.GetCounter().GetValue() != before+1 {
					t.Errorf("forwarded = %v, want %v", m.GetCounter().GetValue(), before+1)
				}
			}
		}
		for _, want := range []string{"caddy_conflict_decisions_total", "caddy_conflict_rereads_total",
			"caddy_conflict_lock_wait_seconds", "caddy_conflict_store_entries", "caddy_conflict_store_hits_total"} {
			if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
				t.Errorf("%s not gathered; got %v", want, names)
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
