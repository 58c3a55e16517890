package deploycheck

// The ScaledObject scales on the lag only while the fleet runs: a
// metrics-api trigger reads the pause from the workers' /metrics through
// their Service, and a scalingModifiers formula, compiled and run with the
// expression library KEDA uses, gives the lag while running and 0 while
// paused. The metric is read from a real worker's /metrics the way KEDA's
// metrics-api scaler reads Prometheus text, in both of its versions.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// pausedMetric is the worker's gauge of the consumer's pause.
const pausedMetric = "bccstop_consumer_paused"

func TestScaledObjectPauseAware(t *testing.T) {
	report(t, checkPauseAwareScaling(theRepo, exportedSeries(t), workerMetrics(t)))
}

// metricsAPIMetadata is the metadata of KEDA's metrics-api scaler, the keys
// its documentation lists (keda.sh, Scalers, Metrics API) apart from
// authentication, which the workers' /metrics does not ask for.
type metricsAPIMetadata struct {
	URL                               string `json:"url"`
	Format                            string `json:"format,omitempty"`
	ValueLocation                     string `json:"valueLocation"`
	TargetValue                       string `json:"targetValue,omitempty"`
	ActivationTargetValue             string `json:"activationTargetValue,omitempty"`
	UnsafeSsl                         string `json:"unsafeSsl,omitempty"`
	AggregateFromKubeServiceEndpoints string `json:"aggregateFromKubeServiceEndpoints,omitempty"`
	AggregationType                   string `json:"aggregationType,omitempty"`
	Timeout                           string `json:"timeout,omitempty"`
}

func checkPauseAwareScaling(r repo, series map[string]map[string]bool, body []byte) problems {
	const dir = kubeDir
	var ps problems
	m, ok := loadKubernetes(r, &ps)
	if !ok {
		return ps
	}
	if len(m.scaledObjects) != 1 {
		ps.add("%s: want one ScaledObject, found %d", dir, len(m.scaledObjects))
		return ps
	}
	so := m.scaledObjects[0]

	var lag, paused string // the triggers' names
	lagThreshold := ""
	for _, tr := range so.Spec.Triggers {
		switch tr.Type {
		case "nats-jetstream":
			lag, lagThreshold = tr.Name, tr.Metadata["lagThreshold"]
			if lag == "" {
				ps.add("%s: the nats-jetstream trigger has no name, so the scalingModifiers formula cannot use it", dir)
			}
		case "metrics-api":
			raw, _ := json.Marshal(tr.Metadata)
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			var md metricsAPIMetadata
			if err := dec.Decode(&md); err != nil {
				ps.add("%s: the metrics-api trigger's metadata: %v", dir, err)
				continue
			}
			if md.ValueLocation != pausedMetric {
				ps.add("%s: the metrics-api trigger reads %q; the fleet's pause is %s", dir, md.ValueLocation, pausedMetric)
				continue
			}
			paused = tr.Name
			if paused == "" {
				ps.add("%s: the metrics-api trigger has no name, so the scalingModifiers formula cannot use it", dir)
			}
			if md.Format != "prometheus" {
				ps.add("%s: the metrics-api trigger has format %q; the workers' /metrics is \"prometheus\" text", dir, md.Format)
			}
			checkPausedURL(&ps, m, md.URL)
		}
	}
	if paused == "" || lag == "" {
		if paused == "" {
			ps.add("%s: no metrics-api trigger reads %s from the workers, so KEDA scales out to maxReplicaCount while the fleet is paused", dir, pausedMetric)
		}
		return ps
	}

	// The metric, as KEDA reads it from a worker.
	if labels, ok := series[pausedMetric]; !ok {
		ps.add("%s: the metrics-api trigger reads %s, which the worker does not export", dir, pausedMetric)
	} else if len(labels) > 0 {
		ps.add("%s: %s has labels %v; KEDA 2.14 and 2.15 read only a metric without labels", dir, pausedMetric, keys(labels))
	}
	for _, read := range []struct {
		keda string
		read func([]byte, string) (float64, error)
	}{{"2.14", kedaLineValue}, {"2.16", kedaParsedValue}} {
		if _, err := read.read(body, pausedMetric); err != nil {
			ps.add("%s: KEDA %s's metrics-api scaler cannot read %s from the worker's /metrics: %v", dir, read.keda, pausedMetric, err)
		}
	}

	// The formula, as KEDA's admission webhook compiles it.
	var sm struct{ formula, target, metricType string }
	if a := so.Spec.Advanced; a != nil && a.ScalingModifiers != nil {
		sm.formula, sm.target, sm.metricType = a.ScalingModifiers.Formula, a.ScalingModifiers.Target, a.ScalingModifiers.MetricType
	}
	if sm.formula == "" {
		ps.add("%s: no advanced.scalingModifiers formula combines %s and %s: each trigger scales on its own, and the lag wins while paused", dir, lag, paused)
		return ps
	}
	if sm.target != lagThreshold {
		ps.add("%s: scalingModifiers.target is %q but lagThreshold %q; with a formula KEDA scales on the target, so keep the two equal", dir, sm.target, lagThreshold)
	}
	if sm.metricType != "" && sm.metricType != "AverageValue" {
		ps.add("%s: scalingModifiers.metricType %q; the lag is a total to share out, AverageValue", dir, sm.metricType)
	}
	env := map[string]float64{lag: -1, paused: -1}
	program, err := expr.Compile("float("+sm.formula+")", expr.Env(env))
	if err != nil {
		ps.add("%s: scalingModifiers.formula %q: %v", dir, sm.formula, err)
		return ps
	}
	for _, c := range []struct {
		paused, lag, want float64
		what              string
	}{
		{1, 5000, 0, "while paused, the formula must give 0, so KEDA asks for minReplicaCount"},
		{0, 5000, 5000, "while running, the formula must give the lag, so KEDA scales as on the lag alone"},
		{0, 0, 0, "while running with nothing waiting, the formula must give 0"},
	} {
		got, err := expr.Run(program, map[string]float64{lag: c.lag, paused: c.paused})
		if err != nil {
			ps.add("%s: scalingModifiers.formula %q with %s=%g, %s=%g: %v", dir, sm.formula, paused, c.paused, lag, c.lag, err)
		} else if got != c.want {
			ps.add("%s: scalingModifiers.formula %q gives %v with %s=%g, %s=%g: %s", dir, sm.formula, got, paused, c.paused, lag, c.lag, c.what)
		}
	}
	return ps
}

// checkPausedURL: the URL is the workers' Service, in the base's
// namespace, on the port that reaches their /metrics.
func checkPausedURL(ps *problems, m *manifests, raw string) {
	const dir = kubeDir
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Path != "/metrics" {
		ps.add("%s: the metrics-api trigger asks %q; want http://<the workers' Service>:<port>/metrics", dir, raw)
		return
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		ps.add("%s: the metrics-api trigger asks %q, with no port", dir, raw)
		return
	}
	parts := strings.SplitN(host, ".", 3)
	if len(parts) != 3 || (parts[2] != "svc" && parts[2] != "svc.cluster.local") {
		ps.add("%s: the metrics-api trigger asks host %q; KEDA runs in its own namespace, so name the Service in full: <service>.<namespace>.svc.cluster.local", dir, host)
		return
	}
	service, namespace := parts[0], parts[1]
	if namespace != m.kustomization.Namespace {
		ps.add("%s: the metrics-api trigger asks the namespace %q, but the workers run in %q", dir, namespace, m.kustomization.Namespace)
	}
	for _, svc := range m.services {
		if svc.Name != service {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if strconv.Itoa(int(p.Port)) == port {
				return // TestKubernetes checks that it reaches the workers' port
			}
		}
		ps.add("%s: the metrics-api trigger asks port %s of Service %s, which does not serve it", dir, port, service)
		return
	}
	ps.add("%s: the metrics-api trigger asks Service %q, which the base does not define", dir, service)
}

// kedaLineValue reads a value as KEDA 2.14 and 2.15 do: the first line
// "NAME VALUE" whose first field starts with the name.
func kedaLineValue(body []byte, name string) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) == 2 && strings.HasPrefix(fields[0], name) {
			return strconv.ParseFloat(fields[1], 64)
		}
	}
	return 0, fmt.Errorf("no line %q", name+" VALUE")
}

// kedaParsedValue reads a value as KEDA 2.16 and later do: the metric
// family parsed by Prometheus' text parser, its first gauge, counter or
// untyped sample.
func kedaParsedValue(body []byte, name string) (float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	f, ok := families[name]
	if !ok || len(f.GetMetric()) == 0 {
		return 0, fmt.Errorf("metric %q not found", name)
	}
	mt := f.GetMetric()[0]
	switch {
	case mt.GetGauge() != nil:
		return mt.GetGauge().GetValue(), nil
	case mt.GetCounter() != nil:
		return mt.GetCounter().GetValue(), nil
	case mt.GetUntyped() != nil:
		return mt.GetUntyped().GetValue(), nil
	}
	return 0, fmt.Errorf("metric %q is neither a gauge, a counter nor untyped", name)
}

func TestMutatedScaledObjectFails(t *testing.T) {
	const scaledObj = kubeDir + "/scaledobject.yaml"
	check := func(t *testing.T, r repo) problems {
		return checkPauseAwareScaling(r, exportedSeries(t), workerMetrics(t))
	}
	runMutations(t, []mutationCase{
		{"without the paused trigger", scaledObj, replace("type: metrics-api", "type: prometheus"), check, "no metrics-api trigger reads bccstop_consumer_paused"},
		{"without the formula", scaledObj, drop(`formula: `), check, "no advanced.scalingModifiers formula"},
		{"with a formula blind to the pause", scaledObj, replace(`formula: "paused > 0 ? 0 : lag"`, `formula: "lag"`), check, "while paused, the formula must give 0"},
		{"with a formula naming no trigger", scaledObj, replace(`formula: "paused > 0 ? 0 : lag"`, `formula: "pause > 0 ? 0 : lag"`), check, "unknown name pause"},
		{"with a target other than lagThreshold", scaledObj, replace(`target: "200"`, `target: "100"`), check, "keep the two equal"},
		{"reading another namespace", scaledObj, replace(".bccstop.svc.cluster.local", ".default.svc.cluster.local"), check, `asks the namespace "default"`},
		{"reading another port", scaledObj, replace(".svc.cluster.local:8080/", ".svc.cluster.local:9090/"), check, "asks port 9090 of Service bccstop"},
		{"reading a metric the worker lacks", scaledObj, replace(`valueLocation: "bccstop_consumer_paused"`, `valueLocation: "bccstop_paused"`), check, `reads "bccstop_paused"`},
		{"with an undocumented key", scaledObj, replace("valueLocation:", "valueLocaton:"), check, `unknown field "valueLocaton"`},
	})
}
