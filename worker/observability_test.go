package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/telemetry"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// observed is a harness whose worker reports to in-memory spans, a
// Prometheus registry and a captured JSON log.
type observed struct {
	*harness
	spans     *tracetest.InMemoryExporter
	providers *telemetry.Providers
	log       *testenv.Buffer
}

func startObserved(t *testing.T) *observed {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	providers, err := telemetry.Setup(context.Background(), telemetry.Options{
		SpanProcessor: sdktrace.NewSimpleSpanProcessor(spans),
		Getenv:        func(string) string { return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { providers.Shutdown(context.Background()) })
	logs := &testenv.Buffer{}
	h := startHarnessWith(t, func(o *bcc.Options) { o.TracerProvider, o.MeterProvider = providers.Tracer, providers.Meter }, func(o *worker.Options) {
		o.TracerProvider, o.MeterProvider, o.Propagator = providers.Tracer, providers.Meter, providers.Propagator
		o.Logger = telemetry.NewLogger(logs, "json", nil)
	})
	return &observed{harness: h, spans: spans, providers: providers, log: logs}
}

// traffic sends one command of each kind and waits for all results:
// succeeded (with a traceparent), forbidden, retried once then succeeded,
// and rejected.
type traffic struct {
	parent            trace.SpanContext
	ok, forbidden     string
	retried, rejected string
	results           map[string]messages.ResultEvent
	headers           map[string]nats.Header
}

func sendTraffic(t *testing.T, o *observed) traffic {
	t.Helper()
	o.sim.SetStatus("i-obs-ok", fakebcc.Running)
	o.sim.SetStatus("i-obs-stopped", fakebcc.Stopped)
	o.sim.SetStatus("i-obs-retry", fakebcc.Running)
	o.sim.FailInstanceTimes("i-obs-retry", 503, "ServiceUnavailable", 1)
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:  trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	tr := traffic{parent: parent, ok: "obs-ok", forbidden: "obs-forbidden", retried: "obs-retry", rejected: "obs-rejected",
		results: map[string]messages.ResultEvent{}, headers: map[string]nats.Header{}}
	o.publish(`{"instanceId":"i-obs-ok","commandId":"obs-ok"}`, nats.Header{"traceparent": []string{"00-" + parent.TraceID().String() + "-" + parent.SpanID().String() + "-01"}})
	o.publish(`{"instanceId":"i-obs-stopped","commandId":"obs-forbidden"}`, nil)
	o.publish(`{"instanceId":"i-obs-retry","commandId":"obs-retry"}`, nil)
	o.publish(`{"instanceId":"i-obs-ok","commandId":"obs-rejected","junk":true}`, nats.Header{"Nats-Msg-Id": []string{"obs-rejected"}})
	for id, r := range o.wait(tr.ok, tr.forbidden, tr.retried, tr.rejected) {
		tr.results[id], tr.headers[id] = r.Event, r.Header
	}
	// A consumer span ends just after its result is stored: wait for all
	// five (four commands, one of them delivered twice).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		n := 0
		for _, s := range o.spans.GetSpans() {
			if s.SpanKind == trace.SpanKindConsumer {
				n++
			}
		}
		if n >= 5 {
			break
		}
	}
	return tr
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func hasEvent(s tracetest.SpanStub, name string) bool {
	for _, e := range s.Events {
		if e.Name == name {
			return true
		}
	}
	return false
}

// spansOf returns the consumer spans of a command id, in start order, and
// every span by parent span id.
func spansOf(all tracetest.SpanStubs, commandID string) (consumers []tracetest.SpanStub, children map[trace.SpanID][]tracetest.SpanStub) {
	children = map[trace.SpanID][]tracetest.SpanStub{}
	for _, s := range all {
		children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		if s.SpanKind == trace.SpanKindConsumer && attr(s, "bccstop.command.id").AsString() == commandID {
			consumers = append(consumers, s)
		}
	}
	return consumers, children
}

func childOfKind(children map[trace.SpanID][]tracetest.SpanStub, parent tracetest.SpanStub, kind trace.SpanKind) (tracetest.SpanStub, int) {
	var found tracetest.SpanStub
	n := 0
	for _, c := range children[parent.SpanContext.SpanID()] {
		if c.SpanKind == kind {
			found = c
			n++
		}
	}
	return found, n
}

func TestTraces(t *testing.T) {
	o := startObserved(t)
	tr := sendTraffic(t, o)
	all := o.spans.GetSpans()

	t.Run("succeeded continues the command's trace", func(t *testing.T) {
		cons, children := spansOf(all, tr.ok)
		if len(cons) != 1 {
			t.Fatalf("%d consumer spans", len(cons))
		}
		c := cons[0]
		if c.Name != "process bcc.instance.stop" || c.SpanContext.TraceID() != tr.parent.TraceID() || c.Parent.SpanID() != tr.parent.SpanID() {
			t.Errorf("consumer span %q trace %s parent %s", c.Name, c.SpanContext.TraceID(), c.Parent.SpanID())
		}
		for key, want := range map[string]string{
			"messaging.system": "nats", "messaging.operation.type": "process", "messaging.destination.name": "bcc.instance.stop",
			"messaging.consumer.group.name": "bccstop-worker", "bccstop.outcome": "succeeded", "bcc.instance.id": "i-obs-ok",
		} {
			if got := attr(c, key).AsString(); got != want {
				t.Errorf("%s = %q, want %q", key, got, want)
			}
		}
		if attr(c, "messaging.nats.message.delivery_count").AsInt64() != 1 || attr(c, "messaging.message.body.size").AsInt64() != int64(len(`{"instanceId":"i-obs-ok","commandId":"obs-ok"}`)) {
			t.Error("delivery count or body size attribute wrong")
		}
		httpSpan, n := childOfKind(children, c, trace.SpanKindClient)
		if n != 1 || attr(httpSpan, "http.request.method").AsString() != "PUT" || attr(httpSpan, "http.response.status_code").AsInt64() != 200 ||
			attr(httpSpan, "bcc.request_id").AsString() != tr.results[tr.ok].Data.RequestID {
			t.Errorf("HTTP client span (%d): %s %v", n, httpSpan.Name, httpSpan.Attributes)
		}
		prod, n := childOfKind(children, c, trace.SpanKindProducer)
		if n != 1 || prod.Name != "send bcc.instance.stop.result.succeeded" || attr(prod, "messaging.destination.name").AsString() != "bcc.instance.stop.result.succeeded" ||
			attr(prod, "messaging.message.id").AsString() != tr.ok {
			t.Errorf("producer span (%d): %s %v", n, prod.Name, prod.Attributes)
		}
		want := "00-" + tr.parent.TraceID().String() + "-" + prod.SpanContext.SpanID().String() + "-01"
		if got := tr.headers[tr.ok].Get("traceparent"); got != want {
			t.Errorf("result traceparent %q, want %q (the producer span, in the command's trace)", got, want)
		}
	})

	t.Run("forbidden carries the BCE code and request id", func(t *testing.T) {
		cons, children := spansOf(all, tr.forbidden)
		if len(cons) != 1 || attr(cons[0], "bccstop.outcome").AsString() != "forbidden" {
			t.Fatalf("consumer spans: %d", len(cons))
		}
		httpSpan, _ := childOfKind(children, cons[0], trace.SpanKindClient)
		if attr(httpSpan, "http.response.status_code").AsInt64() != 409 || attr(httpSpan, "bcc.error_code").AsString() != messages.CodeForbidden ||
			attr(httpSpan, "bcc.request_id").AsString() != tr.results[tr.forbidden].Data.RequestID {
			t.Errorf("HTTP span attributes: %v", httpSpan.Attributes)
		}
	})

	t.Run("retry is an event and an error status, then a second delivery", func(t *testing.T) {
		cons, children := spansOf(all, tr.retried)
		if len(cons) != 2 {
			t.Fatalf("%d consumer spans, want 2", len(cons))
		}
		first, second := cons[0], cons[1]
		if first.StartTime.After(second.StartTime) {
			first, second = second, first
		}
		if !hasEvent(first, "retry scheduled") || first.Status.Code.String() != "Error" || attr(first, "messaging.nats.message.delivery_count").AsInt64() != 1 {
			t.Errorf("first delivery: events %v status %v", first.Events, first.Status)
		}
		if h, _ := childOfKind(children, first, trace.SpanKindClient); attr(h, "http.response.status_code").AsInt64() != 503 {
			t.Errorf("first HTTP span: %v", h.Attributes)
		}
		if attr(second, "bccstop.outcome").AsString() != "succeeded" || attr(second, "messaging.nats.message.delivery_count").AsInt64() != 2 {
			t.Errorf("second delivery: %v", second.Attributes)
		}
	})

	t.Run("rejected has no API call", func(t *testing.T) {
		cons, children := spansOf(all, tr.rejected)
		if len(cons) != 1 {
			t.Fatalf("%d consumer spans", len(cons))
		}
		c := cons[0]
		if !hasEvent(c, "rejected") || c.Status.Code.String() != "Error" || attr(c, "bccstop.code").AsString() != "InvalidCommand" {
			t.Errorf("rejected span: %v %v %v", c.Events, c.Status, c.Attributes)
		}
		if _, n := childOfKind(children, c, trace.SpanKindClient); n != 0 {
			t.Errorf("%d HTTP spans under a rejected command", n)
		}
		if p, n := childOfKind(children, c, trace.SpanKindProducer); n != 1 || p.Name != "send bcc.instance.stop.result.rejected" {
			t.Errorf("producer span: %d %s", n, p.Name)
		}
	})
}

// scrape reads the registry in Prometheus text format.
func scrape(t *testing.T, h http.Handler) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	text := rec.Body.String()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families, text
}

// value sums the samples of a family whose labels include want.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := families[name]
	if !ok {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func TestMetricsMatchTraffic(t *testing.T) {
	o := startObserved(t)
	sendTraffic(t, o)
	// And a repeat of a decided command: answered from the ledger.
	o.publish(`{"instanceId":"i-obs-ok","commandId":"obs-ok"}`, nil)
	deadline := time.Now().Add(10 * time.Second)
	var families map[string]*dto.MetricFamily
	var text string
	for {
		families, text = scrape(t, o.providers.Metrics)
		if value(families, "bccstop_ledger_hits_total", nil) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"bccstop_commands_total", map[string]string{"outcome": "succeeded"}, 2},
		{"bccstop_commands_total", map[string]string{"outcome": "forbidden"}, 1},
		{"bccstop_commands_total", map[string]string{"outcome": "rejected"}, 1},
		{"bccstop_commands_total", map[string]string{"outcome": "failed"}, 0},
		{"bccstop_deliveries_total", map[string]string{"redelivered": "false"}, 5},
		{"bccstop_deliveries_total", map[string]string{"redelivered": "true"}, 1},
		{"bccstop_retries_total", map[string]string{"reason": "api"}, 1},
		{"bccstop_ledger_hits_total", nil, 1},
		{"bccstop_commands_in_flight", nil, 0},
		{"bccstop_command_duration_seconds", nil, 4},
		// Two stops, and the describe before the retry of the stop answered
		// 503 (which may have taken effect).
		{"http_client_request_duration_seconds", map[string]string{"http_response_status_code": "200"}, 3},
		{"http_client_request_duration_seconds", map[string]string{"http_response_status_code": "409"}, 1},
		{"http_client_request_duration_seconds", map[string]string{"http_response_status_code": "503"}, 1},
	}
	for _, c := range checks {
		got := value(families, c.name, c.labels)
		if c.want == 0 && got <= 0 {
			continue // a counter never incremented may be absent
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"bccstop_consumer_pending", "bccstop_consumer_ack_pending", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := families[name]; !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// TestLogLinesCarryTheSpanIDs: every line logged while handling a command
// names the trace and span of its consumer span, and each finished command
// has exactly one line.
func TestLogLinesCarryTheSpanIDs(t *testing.T) {
	o := startObserved(t)
	tr := sendTraffic(t, o)
	spans := o.spans.GetSpans()
	finished := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(o.log.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		cmd, _ := line["command_id"].(string)
		if cmd == "" {
			continue
		}
		cons, _ := spansOf(spans, cmd)
		ok := false
		for _, c := range cons {
			ok = ok || line["trace_id"] == c.SpanContext.TraceID().String() && line["span_id"] == c.SpanContext.SpanID().String()
		}
		if !ok {
			t.Errorf("line %q: trace_id %v span_id %v match no consumer span of %s", line["msg"], line["trace_id"], line["span_id"], cmd)
		}
		if line["msg"] == "command finished" {
			finished[cmd]++
			if strings.Contains(sc.Text(), `"junk"`) {
				t.Errorf("a finished line carries the payload: %s", sc.Text())
			}
		}
	}
	for _, id := range []string{tr.ok, tr.forbidden, tr.retried, tr.rejected} {
		if finished[id] != 1 {
			t.Errorf("%s: %d 'command finished' lines", id, finished[id])
		}
	}
	if line := o.log.String(); !strings.Contains(line, tr.parent.TraceID().String()) {
		t.Error("no line in the command's own trace")
	}
}
