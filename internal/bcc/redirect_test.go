package bcc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/baggage"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
)

// TestRedirectIsNeverFollowed: a 3xx answer, to plain http:// or to another
// host, is never followed: the signed Authorization header and the session
// token go only to the configured endpoint.
func TestRedirectIsNeverFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	var leaked atomic.Value
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		leaked.Store(r.Header.Get("Authorization") + " " + r.Header.Get("X-Bce-Security-Token"))
	}))
	t.Cleanup(other.Close)
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/v2/instance/i-a?stop&token=secret", status)
		}))
		t.Cleanup(api.Close)
		transport := api.Client().Transport.(*http.Transport).Clone()
		c, err := bcc.New(bcc.Options{Endpoint: api.URL, Transport: transport,
			Credentials: bce.Credentials{AccessKeyID: "ak", SecretAccessKey: "sk", SessionToken: "sts-token"}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
		var apiErr *bcc.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != status || apiErr.Code != bcc.CodeUnexpectedRedirect {
			t.Fatalf("HTTP %d: err = %v, want an APIError with code %s", status, err, bcc.CodeUnexpectedRedirect)
		}
		if strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), strings.TrimPrefix(other.URL, "http://")) {
			t.Errorf("error %q should name the target host and nothing of its path or query", err)
		}
		if transient, _ := bcc.Classify(err); transient {
			t.Errorf("HTTP %d: a redirect is classified transient", status)
		}
		if bcc.MayHaveApplied(err) {
			t.Errorf("HTTP %d: a redirect may not have stopped anything", status)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times; the other host saw %q", n, leaked.Load())
	}
}

// TestBaggageIsNotForwarded: W3C baggage a command brought along stays out
// of the API call; the trace context goes.
func TestBaggageIsNotForwarded(t *testing.T) {
	got := make(chan http.Header, 1)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Write([]byte("{}"))
	}))
	t.Cleanup(api.Close)
	tp := sdktrace.NewTracerProvider()
	c, err := bcc.New(bcc.Options{Endpoint: api.URL, Credentials: creds, TracerProvider: tp, MeterProvider: metricnoop.NewMeterProvider()})
	if err != nil {
		t.Fatal(err)
	}
	member, _ := baggage.NewMember("tenant", "acme-secret")
	bag, _ := baggage.New(member)
	ctx, span := tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "command")
	defer span.End()
	if _, err := c.StopInstance(ctx, bcc.StopRequest{InstanceID: "i-a"}); err != nil {
		t.Fatal(err)
	}
	h := <-got
	if h.Get("Baggage") != "" {
		t.Errorf("baggage forwarded to the API: %q", h.Get("Baggage"))
	}
	if h.Get("Traceparent") == "" {
		t.Error("no traceparent on the API call")
	}
}

func TestMayHaveApplied(t *testing.T) {
	// A port nothing listens on: the connection is refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	c, err := bcc.New(bcc.Options{Endpoint: refused, Credentials: creds, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, dialErr := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
	if dialErr == nil || bcc.MayHaveApplied(dialErr) {
		t.Errorf("refused connection: %v; it cannot have stopped anything", dialErr)
	}
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so the server notices the client leaving
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	c, _ = bcc.New(bcc.Options{Endpoint: hang.URL, Credentials: creds, Timeout: 200 * time.Millisecond})
	_, timeoutErr := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
	if timeoutErr == nil || !bcc.MayHaveApplied(timeoutErr) {
		t.Errorf("timeout: %v; the request may have been acted on", timeoutErr)
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&bcc.APIError{StatusCode: 500}, true},
		{&bcc.APIError{StatusCode: 503}, true},
		{&bcc.APIError{StatusCode: 429}, false},
		{&bcc.APIError{StatusCode: 409, Code: bcc.CodeForbidden}, false},
		{&bcc.APIError{StatusCode: 403}, false},
		{errors.New("not from the API"), false},
	} {
		if got := bcc.MayHaveApplied(tc.err); got != tc.want {
			t.Errorf("MayHaveApplied(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
