// Package telemetry sets up OpenTelemetry for bccstop: a tracer provider that
// always creates real spans and exports them only when the standard OTEL_*
// variables ask for it, a meter provider served in Prometheus format (and
// pushed over OTLP too when OTEL_METRICS_EXPORTER asks), W3C propagation over
// NATS headers, and slog loggers that stamp trace ids.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Options configure Setup.
type Options struct {
	// ServiceName is used when OTEL_SERVICE_NAME is not set.
	ServiceName string
	Version     string
	// SpanProcessor, when set, receives every span in addition to (or, with
	// no OTEL exporter configured, instead of) the exporter: tests pass an
	// in-memory one.
	SpanProcessor sdktrace.SpanProcessor
	// Console is where OTEL_TRACES_EXPORTER=console writes; os.Stderr when nil.
	Console io.Writer
	// Getenv reads the OTEL_* variables; os.Getenv when nil.
	Getenv func(string) string
}

// Providers are the OpenTelemetry providers of one process. Pass them on;
// nothing here is installed globally except by the caller.
type Providers struct {
	Tracer     *sdktrace.TracerProvider
	Meter      *sdkmetric.MeterProvider
	Propagator propagation.TextMapPropagator
	// Metrics serves every metric in the Prometheus text format.
	Metrics  http.Handler
	Exporter string // which span exporter is in use: none, otlp, console
	// MetricsExporter says where metrics go besides /metrics: none or otlp.
	MetricsExporter string
}

// Setup builds the providers. The span exporter follows OTEL_TRACES_EXPORTER
// (otlp, console or none); when that is unset, OTLP is used only if an
// OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, so a worker with no OTEL_*
// variables exports nothing yet still gives every span its own ids. The OTLP
// protocol follows OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL (http/protobuf by
// default, or grpc); the SDK reads the other standard variables itself.
func Setup(ctx context.Context, o Options) (*Providers, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	serviceName := o.ServiceName
	if serviceName == "" {
		serviceName = "bccstop"
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName), semconv.ServiceVersion(o.Version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}

	exporter, name, err := spanExporter(ctx, getenv, o.Console)
	if err != nil {
		return nil, err
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exporter))
	}
	if o.SpanProcessor != nil {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(o.SpanProcessor))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	if getenv("OTEL_METRICS_EXEMPLAR_FILTER") == "" {
		// No exemplars unless asked: /metrics (Prometheus text) does not
		// carry them, and picking them costs on every measurement.
		mpOpts = append(mpOpts, sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter))
	}
	pushed, metricsName, err := metricExporter(ctx, getenv)
	if err != nil {
		return nil, err
	}
	if pushed != nil {
		// OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT are read by the reader.
		mpOpts = append(mpOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(pushed)))
	}
	return &Providers{
		Tracer:          sdktrace.NewTracerProvider(tpOpts...),
		Meter:           sdkmetric.NewMeterProvider(mpOpts...),
		Propagator:      propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Metrics:         promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Exporter:        name,
		MetricsExporter: metricsName,
	}, nil
}

func spanExporter(ctx context.Context, getenv func(string) string, console io.Writer) (sdktrace.SpanExporter, string, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, "none", nil
	}
	choice := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")))
	if choice == "" {
		choice = "none"
		if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
			choice = "otlp"
		}
	}
	switch choice {
	case "none":
		return nil, "none", nil
	case "console":
		if console == nil {
			console = os.Stderr
		}
		exp, err := stdouttrace.New(stdouttrace.WithWriter(console))
		return exp, "console", err
	case "otlp":
		protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if protocol == "" {
			protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		switch protocol {
		case "", "http/protobuf":
			exp, err := otlptracehttp.New(ctx)
			return exp, "otlp", err
		case "grpc":
			exp, err := otlptracegrpc.New(ctx)
			return exp, "otlp", err
		}
		return nil, "", fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not supported; use http/protobuf or grpc", protocol)
	}
	return nil, "", fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported; use otlp, console or none", choice)
}

// metricExporter is the exporter OTEL_METRICS_EXPORTER asks for besides the
// Prometheus handler, which is always there: a comma-separated list of otlp,
// prometheus (that handler) and none; unset means none. Unlike traces, an
// OTEL_EXPORTER_OTLP_ENDPOINT alone does not turn OTLP metrics on, so a
// worker exporting spans does not start pushing metrics it already serves.
func metricExporter(ctx context.Context, getenv func(string) string) (sdkmetric.Exporter, string, error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, "none", nil
	}
	otlp := false
	for _, choice := range strings.Split(getenv("OTEL_METRICS_EXPORTER"), ",") {
		switch strings.ToLower(strings.TrimSpace(choice)) {
		case "", "none", "prometheus":
		case "otlp":
			otlp = true
		default:
			return nil, "", fmt.Errorf("OTEL_METRICS_EXPORTER: %q is not supported; use otlp, prometheus (the /metrics endpoint, always served) or none", choice)
		}
	}
	if !otlp {
		return nil, "none", nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "", "http/protobuf":
		exp, err := otlpmetrichttp.New(ctx)
		return exp, "otlp", err
	case "grpc":
		exp, err := otlpmetricgrpc.New(ctx)
		return exp, "otlp", err
	}
	return nil, "", fmt.Errorf("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: %q is not supported; use http/protobuf or grpc", protocol)
}

// Shutdown flushes pending spans and metrics and stops the providers.
func (p *Providers) Shutdown(ctx context.Context) error {
	return errors.Join(p.Tracer.Shutdown(ctx), p.Meter.Shutdown(ctx))
}
