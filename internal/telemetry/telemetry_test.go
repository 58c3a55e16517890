package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	colmetric "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bccstop/bccstop/internal/telemetry"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestExporterFollowsTheStandardVariables(t *testing.T) {
	tests := []struct {
		vars    map[string]string
		want    string
		wantErr string
	}{
		{map[string]string{}, "none", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "none", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "otlp", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console"}, "console", ""},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, "none", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "", "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "", "OTEL_EXPORTER_OTLP_PROTOCOL"},
	}
	for _, tc := range tests {
		p, err := telemetry.Setup(context.Background(), telemetry.Options{Getenv: env(tc.vars), Console: &bytes.Buffer{}})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want one naming %s", tc.vars, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.vars, err)
			continue
		}
		if p.Exporter != tc.want {
			t.Errorf("%v: exporter %s, want %s", tc.vars, p.Exporter, tc.want)
		}
		// Spans are real even when nothing is exported.
		_, span := p.Tracer.Tracer("t").Start(context.Background(), "x")
		if !span.SpanContext().IsValid() {
			t.Errorf("%v: span has no ids", tc.vars)
		}
		span.End()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond) // no collector listens
		p.Shutdown(ctx)
		cancel()
	}
}

func TestMetricsExporterFollowsTheStandardVariables(t *testing.T) {
	tests := []struct {
		vars    map[string]string
		want    string
		wantErr string
	}{
		{map[string]string{}, "none", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "none", ""}, // traces only
		{map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, "none", ""},
		{map[string]string{"OTEL_METRICS_EXPORTER": "otlp"}, "otlp", ""},
		{map[string]string{"OTEL_METRICS_EXPORTER": "prometheus, otlp"}, "otlp", ""},
		{map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"}, "otlp", ""},
		{map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_METRICS_EXPORTER": "otlp"}, "none", ""},
		{map[string]string{"OTEL_METRICS_EXPORTER": "console"}, "", "OTEL_METRICS_EXPORTER"},
		{map[string]string{"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"},
	}
	for _, tc := range tests {
		p, err := telemetry.Setup(context.Background(), telemetry.Options{Getenv: env(tc.vars)})
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want one naming %s", tc.vars, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.vars, err)
			continue
		}
		if p.MetricsExporter != tc.want {
			t.Errorf("%v: metrics exporter %s, want %s", tc.vars, p.MetricsExporter, tc.want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond) // no collector listens
		p.Shutdown(ctx)
		cancel()
	}
}

// TestOTLPMetricsReachACollector: with OTEL_METRICS_EXPORTER=otlp the
// meter provider pushes its metrics over OTLP/HTTP to the endpoint of the
// standard variables (flushed on Shutdown), and /metrics still serves them.
func TestOTLPMetricsReachACollector(t *testing.T) {
	var mu sync.Mutex
	var got []*colmetric.ExportMetricsServiceRequest
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &colmetric.ExportMetricsServiceRequest{}
		if r.URL.Path != "/custom/metrics" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
			t.Errorf("collector got %s %s (%s), %d bytes", r.Method, r.URL.Path, r.Header.Get("Content-Type"), len(body))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	// The exporter reads the endpoint itself, from the process environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // the signal's own endpoint wins
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", collector.URL+"/custom/metrics")

	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "otlp-metrics-test",
		Getenv: env(map[string]string{"OTEL_METRICS_EXPORTER": "otlp"})})
	if err != nil {
		t.Fatal(err)
	}
	counter, err := p.Meter.Meter("test").Int64Counter("bccstop.test.commands")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 3, metric.WithAttributes(attribute.String("outcome", "succeeded")))

	rec := httptest.NewRecorder()
	p.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `bccstop_test_commands_total{outcome="succeeded"} 3`) {
		t.Errorf("/metrics lost the counter:\n%s", rec.Body.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	var service string
	var sum int64
	for _, req := range got {
		for _, rm := range req.ResourceMetrics {
			for _, kv := range rm.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if m.Name == "bccstop.test.commands" {
						for _, dp := range m.GetSum().GetDataPoints() {
							sum += dp.GetAsInt()
						}
					}
				}
			}
		}
	}
	if len(got) == 0 || sum != 3 || service != "otlp-metrics-test" {
		t.Fatalf("%d exports, bccstop.test.commands = %d, service.name %q; want the counter at 3 from otlp-metrics-test", len(got), sum, service)
	}
}

func TestHeaderCarrierKeepsLowerCaseKeys(t *testing.T) {
	h := nats.Header{}
	prop := propagation.TraceContext{}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	prop.Inject(trace.ContextWithSpanContext(context.Background(), sc), telemetry.HeaderCarrier(h))
	if h.Get("traceparent") == "" || h.Get("Traceparent") != "" {
		t.Fatalf("headers: %v", h)
	}
	// A capitalised key from another client is still read.
	other := nats.Header{"Traceparent": []string{h.Get("traceparent")}}
	got := trace.SpanContextFromContext(prop.Extract(context.Background(), telemetry.HeaderCarrier(other)))
	if got.TraceID() != sc.TraceID() {
		t.Fatalf("extracted %v", got)
	}
}

func TestLoggerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, "json", slog.LevelInfo)
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{0xab}, SpanID: trace.SpanID{0xcd}, TraceFlags: trace.FlagsSampled})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "inside")
	log.Info("outside")
	log.Debug("hidden")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines: %q", lines)
	}
	var in, out map[string]any
	json.Unmarshal([]byte(lines[0]), &in)
	json.Unmarshal([]byte(lines[1]), &out)
	if in["trace_id"] != sc.TraceID().String() || in["span_id"] != sc.SpanID().String() || out["trace_id"] != nil {
		t.Fatalf("lines: %v / %v", in, out)
	}
	var text bytes.Buffer
	telemetry.NewLogger(&text, "text", slog.LevelInfo).Info("hello", "k", "v")
	if !strings.Contains(text.String(), "msg=hello k=v") {
		t.Fatalf("text format: %q", text.String())
	}
}
