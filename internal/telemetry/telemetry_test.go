package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

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
