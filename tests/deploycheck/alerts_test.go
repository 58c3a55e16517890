package deploycheck

// The alerting rules in deploy/prometheus: alerts.yml read by the rule
// parser `promtool check rules` uses and held to what an operator needs of
// each alert (a severity, a summary, a description, a runbook section that
// exists); alerts_test.yml run as `promtool test rules` runs it, on
// Prometheus' own rule manager, query engine and test storage, so `make
// test` needs no promtool; the PrometheusRule in deploy/kubernetes held to
// exactly the same groups; and every metric an alert reads held to what the
// worker exports.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	yamlv2 "go.yaml.in/yaml/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	alertsFile         = "deploy/prometheus/alerts.yml"
	alertTestsFile     = "deploy/prometheus/alerts_test.yml"
	prometheusRuleFile = kubeDir + "/prometheusrule.yaml"
	runbookFile        = "docs/operations.md"
)

// The PrometheusRule is generated, not written: kustomize has no generator
// that turns a file into the spec of a custom resource (its generators make
// ConfigMaps and Secrets, whose data are strings), and the Prometheus
// Operator reads rules only from PrometheusRule objects. So alerts.yml is
// the one source, prometheusrule.yaml its copy for the Operator, checked in
// so that `kubectl apply -k` needs nothing but kubectl, and this flag
// rewrites it:
//
//	go test ./tests/deploycheck -run TestPrometheusRule -update-rules
var updateRules = flag.Bool("update-rules", false, "rewrite "+prometheusRuleFile+" from "+alertsFile)

func TestAlertRules(t *testing.T) {
	report(t, checkAlertRules(theRepo))
}

func TestAlertRuleUnitTests(t *testing.T) {
	report(t, checkAlertRuleUnitTests(t, theRepo))
}

func TestPrometheusRule(t *testing.T) {
	if *updateRules {
		raw, err := theRepo.read(alertsFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(theRepo.abs(prometheusRuleFile), generatePrometheusRule(raw), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", prometheusRuleFile)
	}
	report(t, checkPrometheusRule(theRepo))
}

// TestAlertMetricsExist fails while an alert reads a metric the worker does
// not export, or a label one lacks. The alerts on readiness, credentials,
// the blast-radius budget and the ages of commands and pauses are written
// against metrics the worker is to export under exactly those names; until
// it does, this test names each one missing.
func TestAlertMetricsExist(t *testing.T) {
	report(t, checkAlertMetrics(theRepo, exportedSeries(t)))
}

// parseRules reads a rules file as Prometheus loads one: unknown fields
// refused, every expression, label name and template checked. Label names
// are held to the classic character set, so the file loads on Prometheus 2
// as well as 3.
func parseRules(data []byte) (*rulefmt.RuleGroups, []error) {
	return rulefmt.Parse(data, false, model.LegacyValidation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
}

// alertingRules parses alerts.yml, reporting what is wrong with it.
func alertingRules(r repo, ps *problems) []rulefmt.Rule {
	raw, err := r.read(alertsFile)
	if err != nil {
		ps.add("%s: %v", alertsFile, err)
		return nil
	}
	groups, errs := parseRules(raw)
	for _, err := range errs {
		ps.add("%s: %v (promtool check rules says the same)", alertsFile, err)
	}
	if groups == nil {
		return nil
	}
	var alerts []rulefmt.Rule
	for _, g := range groups.Groups {
		for _, rule := range g.Rules {
			if rule.Alert != "" {
				alerts = append(alerts, rule)
			}
		}
	}
	if len(alerts) == 0 && len(errs) == 0 {
		ps.add("%s: no alerting rules", alertsFile)
	}
	return alerts
}

// severities are the values of the severity label, as Alertmanager routes
// are commonly written: critical pages someone, warning makes a ticket.
var severities = []string{"critical", "warning"}

func checkAlertRules(r repo) problems {
	var ps problems
	alerts := alertingRules(r, &ps)
	sections := runbookSections(r, &ps)
	seen := map[string]bool{}
	for _, a := range alerts {
		if seen[a.Alert] {
			ps.add("%s: alert %s is defined twice", alertsFile, a.Alert)
		}
		seen[a.Alert] = true
		if s := a.Labels["severity"]; !slices.Contains(severities, s) {
			ps.add("%s: alert %s has severity %q; want one of %v, which Alertmanager routes on", alertsFile, a.Alert, s, severities)
		}
		for _, name := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(a.Annotations[name]) == "" {
				ps.add("%s: alert %s has no %s annotation", alertsFile, a.Alert, name)
			}
		}
		rb := a.Annotations["runbook_url"]
		if rb == "" {
			continue
		}
		u, err := url.Parse(rb)
		switch {
		case err != nil:
			ps.add("%s: alert %s: runbook_url %q: %v", alertsFile, a.Alert, rb, err)
		case u.Path != runbookFile || u.Fragment == "":
			ps.add("%s: alert %s: runbook_url %q; want %s#<its section>", alertsFile, a.Alert, rb, runbookFile)
		case sections[u.Fragment] == "":
			ps.add("%s: alert %s: runbook_url %q names no section of %s (it has: %s)", alertsFile, a.Alert, rb, runbookFile, strings.Join(keys(sections), ", "))
		case sections[u.Fragment] != a.Alert:
			ps.add("%s: alert %s: runbook_url %q is the section %q; give the alert a section headed with its name", alertsFile, a.Alert, rb, sections[u.Fragment])
		}
	}
	return ps
}

// runbookSections returns the anchors of docs/operations.md's headings
// (as GitHub makes them) → heading text, and checks that the document's
// links to its own sections lead somewhere.
func runbookSections(r repo, ps *problems) map[string]string {
	raw, err := r.read(runbookFile)
	if err != nil {
		ps.add("%s: %v", runbookFile, err)
		return nil
	}
	sections := map[string]string{}
	fenced := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		text = strings.NewReplacer("`", "", "*", "").Replace(text)
		anchor := headingAnchor(text)
		for i := 1; sections[anchor] != ""; i++ { // GitHub numbers repeats
			anchor = fmt.Sprintf("%s-%d", headingAnchor(text), i)
		}
		sections[anchor] = text
	}
	for _, m := range regexp.MustCompile(`\]\((?:operations\.md)?#([^)\s]+)\)`).FindAllStringSubmatch(string(raw), -1) {
		if sections[m[1]] == "" {
			ps.add("%s links to #%s, which is no section of it", runbookFile, m[1])
		}
	}
	return sections
}

// headingAnchor is the anchor GitHub gives a Markdown heading: lower case,
// spaces to hyphens, punctuation other than - and _ dropped.
func headingAnchor(text string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(text) {
		switch {
		case unicode.IsLetter(c) || unicode.IsDigit(c) || c == '-' || c == '_':
			b.WriteRune(c)
		case c == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// ruleTestFile is promtool's rule unit test file, as far as this package
// interprets it (the format is Prometheus' cmd/promtool/unittest.go):
// rule_files, evaluation_interval, and test groups of input_series and
// alert_rule_test. Decoding is strict, so a file that uses more of the
// format (promql_expr_test, external_labels, group_eval_order, …) fails
// here instead of passing unchecked.
type ruleTestFile struct {
	RuleFiles          []string        `yaml:"rule_files"`
	EvaluationInterval model.Duration  `yaml:"evaluation_interval,omitempty"`
	Tests              []ruleTestGroup `yaml:"tests"`
}

type ruleTestGroup struct {
	Name        string         `yaml:"name,omitempty"`
	Interval    model.Duration `yaml:"interval"`
	InputSeries []struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	} `yaml:"input_series"`
	AlertRuleTests []alertRuleTest `yaml:"alert_rule_test,omitempty"`
}

type alertRuleTest struct {
	EvalTime  model.Duration `yaml:"eval_time"`
	Alertname string         `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

// checkAlertRuleUnitTests runs alerts_test.yml, and checks that every alert
// is shown both firing and quiet by it.
func checkAlertRuleUnitTests(t *testing.T, r repo) problems {
	var ps problems
	file, ok := runRuleTests(t, r, alertTestsFile, &ps)
	if !ok {
		return ps
	}
	alerts := alertingRules(r, &ps)
	for _, a := range alerts {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(a.Expr)
		if err != nil {
			continue // reported by TestAlertRules
		}
		reads, _, _ := selectors(expr)
		fires, quiet := false, false
		for _, g := range file.Tests {
			hasInput := false
			for _, s := range g.InputSeries {
				if m, err := parser.NewParser(parser.Options{}).ParseMetric(s.Series); err == nil && slices.Contains(reads, m.Get(model.MetricNameLabel)) {
					hasInput = true
				}
			}
			for _, c := range g.AlertRuleTests {
				if c.Alertname != a.Alert {
					continue
				}
				fires = fires || len(c.ExpAlerts) > 0
				quiet = quiet || len(c.ExpAlerts) == 0 && hasInput
			}
		}
		if !fires {
			ps.add("%s: no test shows alert %s firing", alertTestsFile, a.Alert)
		}
		if !quiet {
			ps.add("%s: no test shows alert %s staying quiet on series it reads (%s), such as no traffic, a blip or a deliberate pause", alertTestsFile, a.Alert, strings.Join(reads, ", "))
		}
	}
	return ps
}

// runRuleTests runs a rule unit test file from r, as promtool test rules
// would: for each test group the input series are loaded lazily, the rule
// groups are evaluated every evaluation_interval from time 0, and at each
// alert_rule_test's eval_time the firing alerts of its name must be exactly
// the expected ones, labels (with alertname) and annotations alike. It
// follows promtool's ruleUnitTest, step for step, for the part of the
// format it interprets.
func runRuleTests(t *testing.T, r repo, file string, ps *problems) (ruleTestFile, bool) {
	t.Helper()
	var f ruleTestFile
	raw, err := r.read(file)
	if err != nil {
		ps.add("%s: %v", file, err)
		return f, false
	}
	if err := yamlv2.UnmarshalStrict(raw, &f); err != nil {
		ps.add("%s: %v (tests/deploycheck interprets rule_files, evaluation_interval, and tests of name, interval, input_series and alert_rule_test)", file, err)
		return f, false
	}
	// The rule files, read from r, written where the rule manager loads them.
	dir := t.TempDir()
	var ruleFiles []string
	for _, rf := range f.RuleFiles {
		if strings.ContainsAny(rf, "*?[") || path.IsAbs(rf) {
			ps.add("%s: rule file %q: tests/deploycheck reads relative paths, not globs", file, rf)
			return f, false
		}
		rel := path.Join(path.Dir(file), rf)
		data, err := r.read(rel)
		if err != nil {
			ps.add("%s: rule file %s: %v", file, rf, err)
			return f, false
		}
		dst := filepath.Join(dir, filepath.FromSlash(rf))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		ruleFiles = append(ruleFiles, dst)
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	// Each group has a storage of its own, so they run side by side; what
	// they find is reported in the file's order.
	found := make([][]error, len(f.Tests))
	var wg sync.WaitGroup
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, g := range f.Tests {
		if g.Interval == 0 {
			g.Interval = f.EvaluationInterval
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			found[i] = runRuleTestGroup(g, time.Duration(f.EvaluationInterval), ruleFiles)
		}()
	}
	wg.Wait()
	for i, g := range f.Tests {
		name := g.Name
		if name == "" {
			name = fmt.Sprintf("unnamed#%d", i)
		}
		for _, err := range found[i] {
			ps.add("%s: test %q: %v", file, name, err)
		}
	}
	return f, true
}

func runRuleTestGroup(g ruleTestGroup, evalInterval time.Duration, ruleFiles []string) []error {
	var load strings.Builder
	fmt.Fprintf(&load, "load %s\n", g.Interval)
	for _, s := range g.InputSeries {
		fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
	}
	suite, err := promqltest.NewLazyLoader(load.String(), promqltest.LazyLoaderOpts{EnableAtModifier: true, EnableNegativeOffset: true})
	if err != nil {
		return []error{err}
	}
	defer suite.Close()
	suite.SubqueryInterval = evalInterval

	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:    rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage()),
		AppendableV2: suite.Storage(),
		Context:      context.Background(),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
	})
	groupsByName, errs := m.LoadGroups(time.Duration(g.Interval), labels.EmptyLabels(), "", nil, false, ruleFiles...)
	if errs != nil {
		return errs
	}
	groups := make([]*rules.Group, 0, len(groupsByName))
	for _, name := range keys(groupsByName) {
		groups = append(groups, groupsByName[name])
	}
	for _, grp := range groups {
		for _, rule := range grp.Rules() {
			if ar, ok := rule.(*rules.AlertingRule); ok {
				ar.SetRestored(true) // as promtool: no `for` state to restore
			}
		}
	}

	var evalTimes []model.Duration
	tests := map[model.Duration][]alertRuleTest{}
	var maxEval model.Duration
	for _, c := range g.AlertRuleTests {
		if c.Alertname == "" {
			return []error{fmt.Errorf("an alert_rule_test at eval_time %s has no alertname", c.EvalTime)}
		}
		if _, ok := tests[c.EvalTime]; !ok {
			evalTimes = append(evalTimes, c.EvalTime)
		}
		tests[c.EvalTime] = append(tests[c.EvalTime], c)
		maxEval = max(maxEval, c.EvalTime)
	}
	slices.Sort(evalTimes)

	mint := time.Unix(0, 0).UTC()
	maxt := mint.Add(time.Duration(maxEval))
	var out []error
	next := 0
	for ts := mint; !ts.After(maxt); ts = ts.Add(evalInterval) {
		var evalErrs []error
		suite.WithSamplesTill(ts, func(err error) {
			if err != nil {
				evalErrs = append(evalErrs, err)
				return
			}
			for _, grp := range groups {
				grp.Eval(suite.Context(), ts)
				for _, rule := range grp.Rules() {
					if err := rule.LastError(); err != nil {
						evalErrs = append(evalErrs, fmt.Errorf("rule %s at %s: %w", rule.Name(), ts.Sub(mint), err))
					}
				}
			}
		})
		if len(evalErrs) > 0 {
			return append(out, evalErrs...)
		}
		// An eval_time between two evaluations is compared with the
		// earlier one, as promtool does.
		for next < len(evalTimes) && time.Duration(evalTimes[next]) < ts.Add(evalInterval).Sub(mint) {
			at := evalTimes[next]
			for _, c := range tests[at] {
				got := firingAlerts(groups, c.Alertname)
				want := expectedAlerts(c)
				if !slices.EqualFunc(got, want, func(a, b alertLabels) bool {
					return labels.Equal(a.labels, b.labels) && labels.Equal(a.annotations, b.annotations)
				}) {
					out = append(out, fmt.Errorf("alert %s at %s:\n    want %s\n    got  %s", c.Alertname, at, alertsString(want), alertsString(got)))
				}
			}
			next++
		}
	}
	return out
}

type alertLabels struct{ labels, annotations labels.Labels }

// firingAlerts are the firing alerts named name, in every group, sorted.
func firingAlerts(groups []*rules.Group, name string) []alertLabels {
	var out []alertLabels
	for _, grp := range groups {
		for _, rule := range grp.Rules() {
			ar, ok := rule.(*rules.AlertingRule)
			if !ok || ar.Name() != name {
				continue
			}
			for _, a := range ar.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out = append(out, alertLabels{a.Labels.Copy(), a.Annotations.Copy()})
				}
			}
		}
	}
	sortAlerts(out)
	return out
}

// expectedAlerts are a test case's alerts: its labels plus alertname, which
// Prometheus adds and the file leaves out.
func expectedAlerts(c alertRuleTest) []alertLabels {
	var out []alertLabels
	for _, a := range c.ExpAlerts {
		ls := map[string]string{labels.AlertName: c.Alertname}
		for k, v := range a.ExpLabels {
			ls[k] = v
		}
		out = append(out, alertLabels{labels.FromMap(ls), labels.FromMap(a.ExpAnnotations)})
	}
	sortAlerts(out)
	return out
}

func sortAlerts(as []alertLabels) {
	sort.Slice(as, func(i, j int) bool {
		if c := labels.Compare(as[i].labels, as[j].labels); c != 0 {
			return c < 0
		}
		return labels.Compare(as[i].annotations, as[j].annotations) < 0
	})
}

func alertsString(as []alertLabels) string {
	if len(as) == 0 {
		return "none"
	}
	var parts []string
	for _, a := range as {
		parts = append(parts, a.labels.String()+" "+a.annotations.String())
	}
	return strings.Join(parts, "\n         ")
}

// prometheusRule is the Prometheus Operator's PrometheusRule
// (monitoring.coreos.com/v1), with the fields of its API reference. The
// Operator's Go module is not imported for one type; strict decoding into
// this struct catches a misspelt or misplaced field all the same.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name                    string            `json:"name"`
			Labels                  map[string]string `json:"labels,omitempty"`
			Interval                string            `json:"interval,omitempty"`
			QueryOffset             string            `json:"query_offset,omitempty"`
			Limit                   *int              `json:"limit,omitempty"`
			PartialResponseStrategy string            `json:"partial_response_strategy,omitempty"`
			Rules                   []struct {
				Record        string             `json:"record,omitempty"`
				Alert         string             `json:"alert,omitempty"`
				Expr          intstr.IntOrString `json:"expr"`
				For           string             `json:"for,omitempty"`
				KeepFiringFor string             `json:"keep_firing_for,omitempty"`
				Labels        map[string]string  `json:"labels,omitempty"`
				Annotations   map[string]string  `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// decodePrometheusRule decodes a PrometheusRule strictly.
func decodePrometheusRule(y []byte) (*prometheusRule, error) {
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(y, &pr); err != nil {
		return nil, err
	}
	return &pr, nil
}

// generatePrometheusRule is prometheusrule.yaml for the rules file raw:
// its groups, comments and all, under spec.
func generatePrometheusRule(raw []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# Generated from deploy/prometheus/alerts.yml; do not edit. Change that file, then
#   go test ./tests/deploycheck -run TestPrometheusRule -update-rules
# (tests/deploycheck/alerts_test.go says why this is generated, and fails
# while the two differ). Needs the Prometheus Operator; its Prometheus must
# select this object (ruleSelector, ruleNamespaceSelector): add the labels
# yours asks for, such as release: <name> for kube-prometheus-stack, from
# an overlay.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: bccstop
  labels:
    app.kubernetes.io/name: bccstop
spec:
`)
	_, groups, _ := bytes.Cut(raw, []byte("\ngroups:"))
	b.WriteString("  groups:")
	for _, line := range strings.SplitAfter(string(groups), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes()
}

func checkPrometheusRule(r repo) problems {
	var ps problems
	raw, err := r.read(alertsFile)
	if err != nil {
		ps.add("%s: %v", alertsFile, err)
		return ps
	}
	want, errs := parseRules(raw)
	if len(errs) > 0 {
		ps.add("%s does not parse (TestAlertRules says why)", alertsFile)
		return ps
	}
	m, ok := loadKubernetes(r, &ps)
	if !ok {
		return ps
	}
	if len(m.prometheusRules) != 1 {
		ps.add("%s: want one PrometheusRule applied (%s listed in kustomization.yaml), found %d", kubeDir, path.Base(prometheusRuleFile), len(m.prometheusRules))
		return ps
	}
	pr := m.prometheusRules[0]
	if pr.Namespace != m.kustomization.Namespace {
		ps.add("%s: the PrometheusRule lands in namespace %q, not the workers' %q", kubeDir, pr.Namespace, m.kustomization.Namespace)
	}
	// The Operator hands spec.groups to Prometheus as a rules file: read
	// them as one.
	type groupsFile struct {
		Groups any `json:"groups"`
	}
	spec, err := yaml.Marshal(groupsFile{pr.Spec.Groups})
	if err != nil {
		ps.add("%s: %v", prometheusRuleFile, err)
		return ps
	}
	got, errs := parseRules(spec)
	for _, err := range errs {
		ps.add("%s: spec.groups: %v", prometheusRuleFile, err)
	}
	regenerate := "go test ./tests/deploycheck -run TestPrometheusRule -update-rules"
	if got != nil && !reflect.DeepEqual(got.Groups, want.Groups) {
		ps.add("%s holds other rules than %s: %s; regenerate it: %s", prometheusRuleFile, alertsFile, firstRuleDifference(want.Groups, got.Groups), regenerate)
	} else if file, err := r.read(prometheusRuleFile); err == nil && !bytes.Equal(file, generatePrometheusRule(raw)) {
		ps.add("%s holds the rules of %s but not as generated (comments or layout differ); regenerate it: %s", prometheusRuleFile, alertsFile, regenerate)
	}
	return ps
}

// firstRuleDifference names where two sets of rule groups first differ.
func firstRuleDifference(want, got []rulefmt.RuleGroup) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d groups instead of %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.Name != g.Name {
			return fmt.Sprintf("group %d is %q instead of %q", i, g.Name, w.Name)
		}
		if len(w.Rules) != len(g.Rules) {
			return fmt.Sprintf("group %s has %d rules instead of %d", w.Name, len(g.Rules), len(w.Rules))
		}
		for j := range w.Rules {
			if !reflect.DeepEqual(w.Rules[j], g.Rules[j]) {
				return fmt.Sprintf("group %s, rule %d (%s%s) differs", w.Name, j+1, w.Rules[j].Alert, w.Rules[j].Record)
			}
		}
		return fmt.Sprintf("group %s differs in its settings", w.Name)
	}
	return "they differ"
}

// scrapeLabels are labels Prometheus adds at scrape time, as discovery
// sets them: the target's job and instance, and on Kubernetes the
// namespace and pod.
var scrapeLabels = []string{"job", "instance", "namespace", "pod"}

// checkAlertMetrics holds every metric an alert reads, with the labels it
// matches, groups and joins on, to series, the worker's series names with
// their label names.
func checkAlertMetrics(r repo, series map[string]map[string]bool) problems {
	var ps problems
	missing := map[string][]string{} // metric → the alerts reading it
	for _, a := range alertingRules(r, &ps) {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(a.Expr)
		if err != nil {
			continue // reported by TestAlertRules
		}
		metrics, matchers, grouping := selectors(expr)
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			if b, ok := node.(*parser.BinaryExpr); ok && b.VectorMatching != nil {
				grouping = append(grouping, b.VectorMatching.MatchingLabels...)
			}
			return nil
		})
		have := map[string]bool{}
		for _, m := range metrics {
			ls, ok := series[m]
			if !ok {
				missing[m] = append(missing[m], a.Alert)
				continue
			}
			for l := range ls {
				have[l] = true
			}
			for _, l := range matchers[m] {
				if !ls[l] && !slices.Contains(scrapeLabels, l) {
					ps.add("%s: alert %s filters %s on label %q, which it does not have (it has: %s)", alertsFile, a.Alert, m, l, keys(ls))
				}
			}
		}
		for _, l := range grouping {
			if !have[l] && !slices.Contains(scrapeLabels, l) {
				ps.add("%s: alert %s groups or joins by %q, a label none of %v has", alertsFile, a.Alert, l, metrics)
			}
		}
	}
	for _, m := range keys(missing) {
		ps.add("%s: the worker does not export %s, which %s reads", alertsFile, m, strings.Join(missing[m], ", "))
	}
	return ps
}

// TestMutatedAlertsFail: like TestMutatedArtifactsFail, each case breaks a
// copy of one file and asserts that the check names what broke, so the
// checks above cannot pass vacuously.
func TestMutatedAlertsFail(t *testing.T) {
	metrics := func(t *testing.T, r repo) problems { return checkAlertMetrics(r, exportedSeries(t)) }
	rulesCheck := func(_ *testing.T, r repo) problems { return checkAlertRules(r) }
	prometheusRule := func(_ *testing.T, r repo) problems { return checkPrometheusRule(r) }
	runMutations(t, []mutationCase{
		{"alert without runbook_url", alertsFile, drop(`runbook_url: docs/operations.md#bccstopslowconsumerdrops$`), rulesCheck, "alert BccstopSlowConsumerDrops has no runbook_url annotation"},
		{"alert with an unknown severity", alertsFile, replace("severity: warning", "severity: page"), rulesCheck, `has severity "page"`},
		{"alert pointing at another section", alertsFile, replace("#bccstopworkernotready", "#bccstopnoworkerready"), rulesCheck, `is the section "BccstopNoWorkerReady"`},
		{"alert with broken PromQL", alertsFile, replace("absent(bccstop_worker_ready)", "absent(bccstop_worker_ready"), rulesCheck, "promtool check rules says the same"},
		{"runbook without a section", runbookFile, drop(`^### BccstopWorkerNotReady$`), rulesCheck, "names no section of docs/operations.md"},
		{"runbook linking to a missing section", runbookFile, drop(`^### BccstopWorkersAbsent$`), rulesCheck, "links to #bccstopworkersabsent, which is no section"},

		{"alert threshold changed", alertsFile, replace("> 1200", "> 12000"), checkAlertRuleUnitTests, "alert BccstopOldestCommandOld at 28m"},
		{"alert for changed", alertsFile, replace("for: 3m", "for: 1m"), checkAlertRuleUnitTests, "alert BccstopNoWorkerReady at 8m"},
		{"test file with an uninterpreted part", alertTestsFile, appendLine("    promql_expr_test: []"), checkAlertRuleUnitTests, "field promql_expr_test not found"},
		{"alert never shown quiet", alertTestsFile, replace("alertname: BccstopSlowConsumerDrops\n        exp_alerts: []", "alertname: BccstopNoWorkerReady\n        exp_alerts: []"), checkAlertRuleUnitTests, "no test shows alert BccstopSlowConsumerDrops staying quiet"},
		{"alert never shown firing", alertTestsFile, replace("alertname: BccstopBudgetNearlyUsed\n        exp_alerts:\n", "alertname: BccstopBudgetUsed\n        exp_alerts:\n"), checkAlertRuleUnitTests, "no test shows alert BccstopBudgetNearlyUsed firing"},

		{"rules changed, PrometheusRule not", alertsFile, replace("> 3600", "> 7200"), prometheusRule, "holds other rules than deploy/prometheus/alerts.yml: group bccstop, rule 4 (BccstopFleetPausedLong) differs"},
		{"rules' comments changed, PrometheusRule not", alertsFile, replace("# One worker stuck unready", "# A worker stuck unready"), prometheusRule, "but not as generated"},
		{"PrometheusRule with a misspelt field", prometheusRuleFile, replace("      rules:\n", "      rule:\n"), prometheusRule, `unknown field "rule"`},
		{"kustomization without the PrometheusRule", kubeDir + "/kustomization.yaml", drop(`- prometheusrule.yaml`), prometheusRule, "prometheusrule.yaml is not listed"},

		{"alert reading a metric the worker lacks", alertsFile, replace("bccstop_nats_slow_consumers_total", "bccstop_nats_slow_consumer_total"), metrics, "the worker does not export bccstop_nats_slow_consumer_total, which BccstopSlowConsumerDrops reads"},
		{"alert filtering on a label the metric lacks", alertsFile, replace(`outcome="rejected"`, `result="rejected"`), metrics, `filters bccstop_commands_total on label "result"`},
	})
}

// mutationCase breaks a copy of file and expects check to report want.
type mutationCase struct {
	name   string
	file   string
	mutate mutation
	check  func(*testing.T, repo) problems
	want   string // in one of the problems reported
}

// runMutations runs each case in parallel: the copies are in memory.
func runMutations(t *testing.T, cases []mutationCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, err := theRepo.read(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			mutated, changed := tc.mutate(data)
			if !changed {
				t.Fatalf("%s: the mutation changes nothing; update the case to the file", tc.file)
			}
			found := tc.check(t, theRepo.with(tc.file, mutated))
			for _, p := range found {
				if strings.Contains(p, tc.want) {
					t.Logf("reported: %s", p)
					return
				}
			}
			t.Errorf("%s, mutated: no problem says %q; the checks reported:\n%s", tc.file, tc.want, strings.Join(found, "\n"))
		})
	}
}
