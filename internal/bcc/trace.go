package bcc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attributes set on the HTTP client span of each API call.
const (
	AttrRequestID = attribute.Key("bcc.request_id")
	AttrErrorCode = attribute.Key("bcc.error_code")
)

// instruments are the client's telemetry: an HTTP CLIENT span per request
// (OpenTelemetry's HTTP conventions, with the BCE request id and error
// code) and the http.client.request.duration histogram. They are made in
// the client, around the one request it sends, rather than by wrapping the
// transport: the span starts after the rate limiter, the trace context goes
// onto the request the client builds anyway (never baggage, which a command
// may carry from anywhere), and the error code is read from the answer the
// client parses anyway.
type instruments struct {
	tracer   trace.Tracer
	duration metric.Float64Histogram
	prop     propagation.TraceContext

	mu       sync.Mutex
	byStatus map[statusKey]metric.MeasurementOption // attribute sets, built once each
	byServer map[string][]attribute.KeyValue
}

type statusKey struct {
	method, host string
	status       int
}

const instrumentationName = "github.com/bccstop/bccstop/internal/bcc"

func newInstruments(tp trace.TracerProvider, mp metric.MeterProvider) (*instruments, error) {
	if tp == nil && mp == nil {
		return nil, nil
	}
	in := &instruments{byStatus: map[statusKey]metric.MeasurementOption{}, byServer: map[string][]attribute.KeyValue{}}
	if tp != nil {
		in.tracer = tp.Tracer(instrumentationName)
	}
	if mp != nil {
		var err error
		in.duration, err = mp.Meter(instrumentationName).Float64Histogram("http.client.request.duration", metric.WithUnit("s"),
			metric.WithDescription("Duration of HTTP client requests (the BCC API calls)."),
			metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
		if err != nil {
			return nil, err
		}
	}
	return in, nil
}

// start begins the span of a request to u.
func (in *instruments) start(ctx context.Context, method string, u *url.URL) (context.Context, trace.Span, time.Time) {
	if in == nil {
		return ctx, nil, time.Time{}
	}
	begin := time.Now()
	if in.tracer == nil {
		return ctx, nil, begin
	}
	ctx, span := in.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(in.serverAttrs(method, u.Host)...), trace.WithTimestamp(begin))
	return ctx, span, begin
}

// inject puts the span's trace context (and nothing else) on the request.
func (in *instruments) inject(ctx context.Context, h http.Header) {
	if in != nil && in.tracer != nil {
		in.prop.Inject(ctx, propagation.HeaderCarrier(h))
	}
}

// end records how a request ended: status 0 for no answer.
func (in *instruments) end(ctx context.Context, span trace.Span, begin time.Time, method, host string, status int, requestID, code string, err error) {
	if in == nil {
		return
	}
	if in.duration != nil {
		in.duration.Record(ctx, time.Since(begin).Seconds(), in.statusSet(method, host, status))
	}
	if span == nil {
		return
	}
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if requestID != "" {
		span.SetAttributes(AttrRequestID.String(requestID))
	}
	if code != "" {
		span.SetAttributes(AttrErrorCode.String(code))
	}
	if err != nil || status >= 400 {
		span.SetStatus(codes.Error, errorType(status, err))
		span.SetAttributes(attribute.String("error.type", errorType(status, err)))
	}
	span.End()
}

func errorType(status int, err error) string {
	if status >= 400 {
		return strconv.Itoa(status)
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return "timeout"
	}
	return "transport"
}

func (in *instruments) serverAttrs(method, host string) []attribute.KeyValue {
	in.mu.Lock()
	defer in.mu.Unlock()
	key := method + " " + host
	if attrs, ok := in.byServer[key]; ok {
		return attrs
	}
	attrs := requestAttrs(method, host)
	in.byServer[key] = attrs
	return attrs
}

func (in *instruments) statusSet(method, host string, status int) metric.MeasurementOption {
	k := statusKey{method, host, status}
	in.mu.Lock()
	defer in.mu.Unlock()
	if opt, ok := in.byStatus[k]; ok {
		return opt
	}
	attrs := requestAttrs(method, host)
	if status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", status))
	} else {
		attrs = append(attrs, attribute.String("error.type", "transport"))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	in.byStatus[k] = opt
	return opt
}

// requestAttrs are the attributes every HTTP client span and measurement
// carries: the method and the server's name and port (when it has one).
func requestAttrs(method, host string) []attribute.KeyValue {
	name, port := splitHostPort(host)
	attrs := []attribute.KeyValue{attribute.String("http.request.method", method), attribute.String("server.address", name)}
	if port != 0 {
		attrs = append(attrs, attribute.Int("server.port", port))
	}
	return attrs
}

func splitHostPort(host string) (string, int) {
	name, p, err := net.SplitHostPort(host)
	if err != nil {
		return host, 0
	}
	port, _ := strconv.Atoi(p)
	return name, port
}
