package caddyconflict

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

const dashboardFile = "docs/grafana-dashboard.json"

var (
	// A metric name, and the same name followed by its label matchers.
	promMetric   = regexp.MustCompile(`caddy_conflict_[a-z_]+`)
	promSelector = regexp.MustCompile(`(caddy_conflict_[a-z_]+)\{([^}]*)\}`)
	promMatcher  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	promGrouping = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	plainValues  = regexp.MustCompile(`^[a-z0-9_-]+(\|[a-z0-9_-]+)*$`)
)

// targetLabels are added by Prometheus when it scrapes Caddy, so they are
// never in the collectors' own series.
var targetLabels = map[string]bool{"instance": true, "job": true}

// The dashboard shipped in docs/ queries only series the module exports,
// with their labels: a renamed metric or label would leave a panel that
// silently says "No data".
func TestDashboardMetrics(t *testing.T) {
	families := gatherMetrics(t)
	exprs := dashboardExpressions(t)
	if len(exprs) == 0 {
		t.Fatalf("%s has no PromQL expressions", dashboardFile)
	}
	queried := map[string]bool{}
	for _, expr := range exprs {
		for _, name := range promMetric.FindAllString(expr, -1) {
			queried[name] = true
		}
		checkExpression(t, families, expr)
	}
	// Every family the module exports has a panel.
	for name := range families {
		used := queried[name]
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			used = used || queried[name+suffix]
		}
		if !used {
			t.Errorf("%s is exported but no panel of %s shows it", name, dashboardFile)
		}
	}
}

// The check must fail for a name or a label the module does not export.
func TestDashboardMetricsCatchUnknownNames(t *testing.T) {
	families := gatherMetrics(t)
	for _, expr := range []string{
		`rate(caddy_conflict_decisions_totals[5m])`,                     // misspelt name
		`rate(caddy_conflict_decisions_total_bucket[5m])`,               // suffix of a counter
		`sum by (kind) (rate(caddy_conflict_decisions_total[5m]))`,      // label that does not exist
		`rate(caddy_conflict_decisions_total{outcome="forwarder"}[5m])`, // value never counted
	} {
		if problems := expressionProblems(families, expr); len(problems) == 0 {
			t.Errorf("no problem found in %s", expr)
		}
	}
	if p := expressionProblems(families, `sum by (le) (rate(caddy_conflict_lock_wait_seconds_bucket{instance=~"$instance"}[5m]))`); len(p) > 0 {
		t.Errorf("a valid histogram query was refused: %v", p)
	}
}

// gatherMetrics registers the module's collectors into a fresh registry,
// as a Caddy configuration does, and returns the gathered families by name.
func gatherMetrics(t *testing.T) map[string]family {
	t.Helper()
	// These vectors have no series until their first event: create the
	// ones a fresh Caddy with the defaults would count first (normalize 409,
	// both on_store_error actions), at zero, so that they are gathered.
	metrics.upstreamProblems.WithLabelValues("409")
	metrics.storeErrors.WithLabelValues("rejected")
	metrics.storeErrors.WithLabelValues("forwarded")

	reg := prometheus.NewPedanticRegistry()
	if err := registerMetrics(reg); err != nil {
		t.Fatalf("register: %v", err)
	}
	gathered, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	families := map[string]family{}
	for _, f := range gathered {
		fam := family{typ: f.GetType().String()}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			fam.series = append(fam.series, labels)
		}
		families[f.GetName()] = fam
	}
	return families
}

// family is what the check needs of a gathered metric family: its type
// (COUNTER, GAUGE, HISTOGRAM, SUMMARY, ...) and each series' labels.
type family struct {
	typ    string
	series []map[string]string
}

// dashboardExpressions returns the PromQL of every panel target and of the
// template variables' queries, and checks that every target uses the
// ${DS_PROMETHEUS} data source (a uid left from an export breaks imports).
func dashboardExpressions(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		SchemaVersion int `json:"schemaVersion"`
		Panels        []struct {
			Title      string `json:"title"`
			Type       string `json:"type"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr       string `json:"expr"`
				Datasource *struct {
					UID string `json:"uid"`
				} `json:"datasource"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.SchemaVersion == 0 {
		t.Errorf("%s has no schemaVersion", dashboardFile)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q does not use the ${DS_PROMETHEUS} data source", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("a query of panel %q does not use the ${DS_PROMETHEUS} data source", p.Title)
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	hasDatasource := false
	for _, v := range dash.Templating.List {
		hasDatasource = hasDatasource || v.Name == "DS_PROMETHEUS" && v.Type == "datasource"
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil { // older dashboards: the query is a plain string
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		exprs = append(exprs, q.Query)
	}
	if !hasDatasource {
		t.Errorf("%s has no DS_PROMETHEUS data source variable", dashboardFile)
	}
	return exprs
}

func checkExpression(t *testing.T, families map[string]family, expr string) {
	t.Helper()
	for _, p := range expressionProblems(families, expr) {
		t.Errorf("%s\nin: %s", p, expr)
	}
}

// expressionProblems lists what in expr the gathered families do not have:
// metric names (a histogram's _bucket, _sum and _count are its own name),
// labels in matchers and in by/without, and plain matcher values.
func expressionProblems(families map[string]family, expr string) []string {
	var problems []string
	labels := map[string]map[string]bool{} // label -> its values, over the expression's metrics
	buckets := false
	for _, name := range promMetric.FindAllString(expr, -1) {
		f, ok := familyOf(families, name)
		if !ok {
			problems = append(problems, "unknown metric "+name)
			continue
		}
		buckets = buckets || strings.HasSuffix(name, "_bucket")
		for _, series := range f.series {
			for name, value := range series {
				if labels[name] == nil {
					labels[name] = map[string]bool{}
				}
				labels[name][value] = true
			}
		}
	}
	known := func(label string) bool {
		return targetLabels[label] || labels[label] != nil || label == "le" && buckets
	}
	for _, sel := range promSelector.FindAllStringSubmatch(expr, -1) {
		for _, m := range promMatcher.FindAllStringSubmatch(sel[2], -1) {
			label, value := m[1], m[3]
			if !known(label) {
				problems = append(problems, "unknown label "+label+" of "+sel[1])
				continue
			}
			if targetLabels[label] || !plainValues.MatchString(value) {
				continue // a variable or a real regular expression
			}
			for _, v := range strings.Split(value, "|") {
				if !labels[label][v] {
					problems = append(problems, "label "+label+" of "+sel[1]+" never has the value "+v)
				}
			}
		}
	}
	for _, g := range promGrouping.FindAllStringSubmatch(expr, -1) {
		for _, label := range strings.Split(g[1], ",") {
			if label = strings.TrimSpace(label); label != "" && !known(label) {
				problems = append(problems, "unknown label "+label+" in "+g[0])
			}
		}
	}
	return problems
}

// familyOf finds the family a queried name belongs to: the name itself, or
// the histogram (or summary) whose _bucket, _sum or _count it is.
func familyOf(families map[string]family, name string) (family, bool) {
	if f, ok := families[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		f, ok := families[base]
		switch {
		case !ok:
			return family{}, false
		case f.typ == "HISTOGRAM", f.typ == "SUMMARY" && suffix != "_bucket":
			return f, true
		}
		return family{}, false
	}
	return family{}, false
}
