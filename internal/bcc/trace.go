package bcc

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// NewTracedTransport is NewTransport under otelhttp: each request gets an
// HTTP client span (with the BCE request id and error code, see Annotated),
// the http.client.request.duration metric, and a traceparent header.
//
// Only the W3C trace context goes to the API: never baggage, which a command
// may carry from anywhere and which is nobody's business at Baidu.
func NewTracedTransport(tp trace.TracerProvider, mp metric.MeterProvider) http.RoundTripper {
	return otelhttp.NewTransport(Annotated(NewTransport()),
		otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp), otelhttp.WithPropagators(propagation.TraceContext{}))
}

// Span attributes set on the HTTP client span of each API call.
const (
	AttrRequestID = attribute.Key("bcc.request_id")
	AttrErrorCode = attribute.Key("bcc.error_code")
)

// annotated is a RoundTripper that adds the BCE request id and, for an
// error answer, the BCE error code to the span in the request's context.
// Placed beneath otelhttp's transport, that span is the HTTP client span.
type annotated struct{ next http.RoundTripper }

// Annotated wraps next; see AttrRequestID and AttrErrorCode.
func Annotated(next http.RoundTripper) http.RoundTripper { return annotated{next} }

func (a annotated) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := a.next.RoundTrip(req)
	span := trace.SpanFromContext(req.Context())
	if err != nil || !span.IsRecording() {
		return resp, err
	}
	if id := resp.Header.Get(HeaderRequestID); id != "" {
		span.SetAttributes(AttrRequestID.String(id))
	}
	if resp.StatusCode >= 300 {
		// Error bodies are small; read it here and hand on a copy.
		payload, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(payload))
		var body struct {
			Code string `json:"code"`
		}
		if readErr == nil && json.Unmarshal(payload, &body) == nil && body.Code != "" {
			span.SetAttributes(AttrErrorCode.String(body.Code))
		}
	}
	return resp, nil
}
