package deploycheck

// The worker's /metrics, linted by Prometheus' own promlint and read by its
// text-format parser, and the Grafana dashboard in deploy/grafana, whose
// every expression is parsed by the PromQL parser Prometheus runs and
// held to the series the worker really exports.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

const dashboardFile = "deploy/grafana/bccstop-dashboard.json"

// TestMetricsLint lints the worker's /metrics as `promtool check metrics`
// does.
func TestMetricsLint(t *testing.T) {
	found, err := promlint.New(bytes.NewReader(workerMetrics(t))).Lint()
	if err != nil {
		t.Fatalf("the worker's /metrics is not the Prometheus text format: %v", err)
	}
	for _, p := range found {
		t.Errorf("the worker's /metrics: %s: %s (promlint)", p.Metric, p.Text)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	report(t, checkDashboard(theRepo, exportedSeries(t)))
}

type dashboardPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// checkDashboard checks the dashboard against series, the worker's series
// names with their label names.
func checkDashboard(r repo, series map[string]map[string]bool) problems {
	const file = dashboardFile
	var ps problems
	raw, err := r.read(file)
	if err != nil {
		ps.add("%s: %v", file, err)
		return ps
	}
	var d struct {
		UID        string           `json:"uid"`
		Title      string           `json:"title"`
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Type       string          `json:"type"`
				Name       string          `json:"name"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		ps.add("%s is not valid JSON: %v", file, err)
		return ps
	}
	if d.UID == "" || d.Title == "" {
		ps.add("%s: set uid and title, so provisioning and links find the dashboard", file)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	dsVar := ""
	type query struct{ where, expr string }
	var queries []query
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		switch v.Type {
		case "datasource":
			dsVar = v.Name
		case "query":
			q := v.Definition
			var obj struct {
				Query string `json:"query"`
			}
			var s string
			if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
				q = obj.Query
			} else if json.Unmarshal(v.Query, &s) == nil && s != "" {
				q = s
			}
			// label_values(METRIC, LABEL) is Grafana's, not PromQL: its
			// first argument is a series selector.
			if m := regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$`).FindStringSubmatch(q); m != nil {
				queries = append(queries, query{"variable $" + v.Name, m[1]})
			}
		}
	}
	if dsVar == "" {
		ps.add("%s: no datasource template variable; the dashboard would be tied to one Prometheus", file)
	}

	ids := map[int]bool{}
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			if ids[p.ID] {
				ps.add("%s: panel id %d is used twice", file, p.ID)
			}
			ids[p.ID] = true
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				ps.add("%s: panel %q has no query", file, p.Title)
			}
			if dsVar != "" && !bytes.Contains(p.Datasource, []byte("$"+dsVar)) && !bytes.Contains(p.Datasource, []byte("${"+dsVar+"}")) {
				ps.add("%s: panel %q does not use the datasource variable $%s", file, p.Title, dsVar)
			}
			for _, tg := range p.Targets {
				queries = append(queries, query{fmt.Sprintf("panel %q", p.Title), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	if len(queries) == 0 {
		ps.add("%s: no queries", file)
	}

	names := keys(series)
	promql := parser.NewParser(parser.Options{})
	for _, q := range queries {
		for _, m := range grafanaVariable.FindAllStringSubmatch(q.expr, -1) {
			if name := m[1] + m[2] + m[3]; !vars[name] {
				ps.add("%s: %s uses $%s, which is no template variable", file, q.where, name)
			}
		}
		expr, err := promql.ParseExpr(substituteVariables(q.expr))
		if err != nil {
			ps.add("%s: %s: %q is not PromQL: %v", file, q.where, q.expr, err)
			continue
		}
		metrics, matchers, grouping := selectors(expr)
		if len(metrics) == 0 {
			ps.add("%s: %s: %q names no metric", file, q.where, q.expr)
		}
		have := map[string]bool{}
		for _, m := range metrics {
			labels, ok := series[m]
			if !ok {
				ps.add("%s: %s queries %s, which the worker does not export; its metrics are: %s", file, q.where, m, strings.Join(names, ", "))
				continue
			}
			for l := range labels {
				have[l] = true
			}
			for _, l := range matchers[m] {
				if !labels[l] && !targetLabel(l) {
					ps.add("%s: %s filters %s on label %q, which it does not have (it has: %s)", file, q.where, m, l, keys(labels))
				}
			}
		}
		for _, l := range grouping {
			if !have[l] && !targetLabel(l) {
				ps.add("%s: %s groups by %q, a label none of %v has", file, q.where, l, metrics)
			}
		}
	}
	return ps
}

// grafanaVariable matches $name, ${name} and ${name:format}, and [[name]].
var grafanaVariable = regexp.MustCompile(`\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]`)

// substituteVariables replaces Grafana's variables with what Grafana would
// put there: a duration for the interval variables, a regular expression
// for the others (which stand in label matchers).
func substituteVariables(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.Contains(v, "__") {
			return "5m"
		}
		return ".+"
	})
}

// selectors returns the metric names an expression reads, the label names
// each selector matches on, and the labels of its by/without clauses.
func selectors(expr parser.Expr) (metrics []string, matchers map[string][]string, grouping []string) {
	matchers = map[string][]string{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			name := n.Name
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
				}
			}
			if !slices.Contains(metrics, name) {
				metrics = append(metrics, name)
			}
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel {
					matchers[name] = append(matchers[name], m.Name)
				}
			}
		case *parser.AggregateExpr:
			grouping = append(grouping, n.Grouping...)
		}
		return nil
	})
	return metrics, matchers, grouping
}

// targetLabel reports labels Prometheus adds at scrape time.
func targetLabel(l string) bool { return l == "job" || l == "instance" }

// exportedSeries parses the worker's /metrics with Prometheus' text parser:
// series name (with _bucket, _sum and _count for histograms and summaries)
// → label names.
func exportedSeries(t *testing.T) map[string]map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(workerMetrics(t)))
	if err != nil {
		t.Fatalf("the worker's /metrics: %v", err)
	}
	out := map[string]map[string]bool{}
	add := func(name string, m *dto.Metric, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range m.GetLabel() {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}
	return out
}

// scraped is the worker's /metrics, scraped once for all tests.
var scraped struct {
	once sync.Once
	body []byte
}

// workerMetrics runs a worker, drives it through a retry, a success and a
// ledger hit (some series exist only once such a thing has happened), and
// returns its /metrics. The worker, NATS and the simulator stop with the
// first test that asks.
func workerMetrics(t *testing.T) []byte {
	t.Helper()
	scraped.once.Do(func() { scraped.body = scrapeWorker(t) })
	if scraped.body == nil {
		t.Fatal("the worker could not be scraped (see the first test that tried)")
	}
	return scraped.body
}

func scrapeWorker(t *testing.T) []byte {
	t.Helper()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	const id = "i-deploydash"
	sim.SetStatus(id, fakebcc.Running)
	sim.FailInstanceTimes(id, http.StatusServiceUnavailable, "ServiceUnavailable", 1) // one retry, then success
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start(t, []string{
		"NATS_URL=" + srv.ClientURL(),
		"BCE_ACCESS_KEY_ID=" + testenv.Credentials.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY=" + testenv.Credentials.SecretAccessKey,
		"BCC_ENDPOINT=" + simURL,
		"BCCSTOP_HTTP_ADDR=" + addr,
		"BCCSTOP_BACKOFF=100ms",
		"BCCSTOP_LOG_LEVEL=warn",
	}, "worker")
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(path string) (int, []byte) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if !waitFor(15*time.Second, func() bool { code, _ := get("/readyz"); return code == http.StatusOK }) {
		t.Fatalf("the worker on %s never became ready", addr)
	}

	_, js := testenv.Connect(t, srv.ClientURL())
	publish := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// No Nats-Msg-Id: the repeat must reach the worker and hit the ledger.
		if _, err := js.Publish(ctx, messages.CommandSubject, []byte(`{"instanceId":"`+id+`","commandId":"deploy-dashboard"}`), jetstream.WithExpectStream("BCCSTOP_COMMANDS_V2")); err != nil {
			t.Fatal(err)
		}
	}
	// Counters are exported at zero from the start; what shows the traffic
	// happened is the command duration histogram, which has no zero.
	want := []string{"bccstop_commands_total", "bccstop_retries_total", "bccstop_ledger_hits_total", "http_client_request_duration_seconds_bucket",
		"bccstop_command_duration_seconds_bucket"}
	publish()
	repeated := false
	var body []byte
	missing := want
	waitFor(15*time.Second, func() bool {
		_, body = get("/metrics")
		if !repeated && bytes.Contains(body, []byte(`bccstop_commands_total{outcome="succeeded"} 1`)) {
			publish()
			repeated = true
		}
		missing = slices.DeleteFunc(slices.Clone(want), func(m string) bool { return exports(body, m) })
		return len(missing) == 0 && bytes.Contains(body, []byte("\nbccstop_ledger_hits_total 1"))
	})
	if len(missing) > 0 {
		t.Fatalf("the worker's /metrics still lacks %v after a retried command and a repeat; got:\n%s", missing, body)
	}
	return body
}

// exports reports whether a /metrics body has a sample of the series name.
func exports(body []byte, name string) bool {
	return bytes.Contains(body, []byte("\n"+name+"{")) || bytes.Contains(body, []byte("\n"+name+" "))
}
