package bcc_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"golang.org/x/time/rate"
)

var creds = bce.Credentials{AccessKeyID: "test-ak", SecretAccessKey: "test-sk"}

func newPair(t *testing.T, opts bcc.Options) (*bcc.Client, *fakebcc.Server) {
	t.Helper()
	fake := fakebcc.New(fakebcc.Options{Credentials: creds})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	opts.Endpoint = srv.URL
	if !opts.Credentials.Valid() {
		opts.Credentials = creds
	}
	c, err := bcc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, fake
}

func TestStopThenForbidden(t *testing.T) {
	c, fake := newPair(t, bcc.Options{})
	fake.SetStatus("i-running1", fakebcc.Running)
	ctx := context.Background()

	resp, err := c.StopInstance(ctx, bcc.StopRequest{InstanceID: "i-running1"})
	if err != nil {
		t.Fatalf("first stop: %v", err)
	}
	if resp.StatusCode != 200 || resp.RequestID == "" {
		t.Fatalf("first stop answer = %+v", resp)
	}
	if st, _ := fake.Status("i-running1"); st != fakebcc.Stopping {
		t.Fatalf("status after stop = %s, want Stopping", st)
	}

	_, err = c.StopInstance(ctx, bcc.StopRequest{InstanceID: "i-running1", ForceStop: true})
	var apiErr *bcc.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("second stop: %v, want an APIError", err)
	}
	if apiErr.StatusCode != 409 || apiErr.Code != "Instance.StopInstanceOperationForbidden" || apiErr.RequestID == "" {
		t.Fatalf("second stop error = %+v", apiErr)
	}
	if !bcc.IsForbidden(err) {
		t.Fatal("IsForbidden = false")
	}
	if transient, _ := bcc.Classify(err); transient {
		t.Fatal("409 classified transient")
	}

	inst, _, err := c.DescribeInstance(ctx, "", "i-running1")
	if err != nil || inst.ID != "i-running1" || inst.Status != fakebcc.Stopping {
		t.Fatalf("describe = %+v, %v", inst, err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name          string
		status        int
		retryAfter    string
		wantTransient bool
		wantAfter     time.Duration
	}{
		{"500", 500, "", true, 0},
		{"502", 502, "", true, 0},
		{"503 with Retry-After", 503, "7", true, 7 * time.Second},
		{"429", 429, "2", true, 2 * time.Second},
		{"400", 400, "", false, 0},
		{"403", 403, "", false, 0},
		{"404", 404, "", false, 0},
		{"409", 409, "", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.Header().Set("X-Bce-Request-Id", "hdr-id")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(`{"code":"SomeCode","message":"m"}`))
			}))
			defer srv.Close()
			c, err := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-x"})
			var apiErr *bcc.APIError
			if !errors.As(err, &apiErr) || apiErr.RequestID != "hdr-id" || apiErr.Code != "SomeCode" {
				t.Fatalf("err = %v", err)
			}
			transient, after := bcc.Classify(err)
			if transient != tc.wantTransient || after != tc.wantAfter {
				t.Fatalf("Classify = %v, %v; want %v, %v", transient, after, tc.wantTransient, tc.wantAfter)
			}
		})
	}
}

func TestTransportErrorsAreTransient(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		c, fake := newPair(t, bcc.Options{Timeout: 100 * time.Millisecond})
		fake.SetStatus("i-slow", fakebcc.Running)
		fake.SetLatency(2*time.Second, 0)
		_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-slow"})
		var te *bcc.TransportError
		if !errors.As(err, &te) || !te.Timeout() {
			t.Fatalf("err = %v, want a timeout", err)
		}
		if transient, _ := bcc.Classify(err); !transient {
			t.Fatal("timeout not transient")
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		c, _ := bcc.New(bcc.Options{Endpoint: url, Credentials: creds})
		_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-x"})
		if transient, _ := bcc.Classify(err); !transient {
			t.Fatalf("refused connection not transient: %v", err)
		}
	})
}

func TestWrongSecretIsTerminal(t *testing.T) {
	c, fake := newPair(t, bcc.Options{Credentials: bce.Credentials{AccessKeyID: "test-ak", SecretAccessKey: "wrong"}})
	fake.SetStatus("i-a", fakebcc.Running)
	_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
	var apiErr *bcc.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Code != "SignatureDoesNotMatch" {
		t.Fatalf("err = %v", err)
	}
	if transient, _ := bcc.Classify(err); transient {
		t.Fatal("403 transient")
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error text leaks the secret: %v", err)
	}
}

// TestRequestExpiredIsResignedOnce: a clock that is off for the first
// signature only gets one RequestExpired, then the re-signed call succeeds.
func TestRequestExpiredIsResignedOnce(t *testing.T) {
	var calls atomic.Int32
	clock := func() time.Time {
		if calls.Add(1) == 1 {
			return time.Now().Add(-time.Hour)
		}
		return time.Now()
	}
	c, fake := newPair(t, bcc.Options{Now: clock})
	fake.SetStatus("i-a", fakebcc.Running)
	if _, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if got := calls.Load(); got != 2 {
		t.Fatalf("signed %d times, want 2", got)
	}

	// A clock that stays off fails with RequestExpired after two signatures.
	calls.Store(0)
	stale, fake2 := newPair(t, bcc.Options{Now: func() time.Time { calls.Add(1); return time.Now().Add(-time.Hour) }})
	fake2.SetStatus("i-a", fakebcc.Running)
	_, err := stale.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
	var apiErr *bcc.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "RequestExpired" || calls.Load() != 2 {
		t.Fatalf("err = %v after %d signatures", err, calls.Load())
	}
}

func TestEndpointRules(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		ok       bool
	}{
		{"https://bcc.bj.baidubce.com", true},
		{"https://bcc.bj.baidubce.com:8443", true},
		{"http://127.0.0.1:9000", true},
		{"http://localhost:9000", true},
		{"http://[::1]:9000", true},
		{"http://bcc.bj.baidubce.com", false},
		{"http://10.0.0.1:80", false},
		{"ftp://x", false},
		{"bcc.bj.baidubce.com", false},
		{"https://bcc.bj.baidubce.com/v2", false},
	} {
		_, err := bcc.New(bcc.Options{Endpoint: tc.endpoint, Credentials: creds})
		if (err == nil) != tc.ok {
			t.Errorf("endpoint %q: err = %v, want ok=%v", tc.endpoint, err, tc.ok)
		}
	}
}

func TestRegions(t *testing.T) {
	gzFake := fakebcc.New(fakebcc.Options{Credentials: creds})
	gz := httptest.NewServer(gzFake)
	defer gz.Close()
	c, bjFake := newPair(t, bcc.Options{Regions: map[string]string{"gz": gz.URL}})
	gzFake.SetStatus("i-gz", fakebcc.Running)
	if _, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-gz", Region: "gz"}); err != nil {
		t.Fatal(err)
	}
	if gzFake.StopCalls("i-gz") != 1 || bjFake.StopCalls("i-gz") != 0 {
		t.Fatal("call did not go to the region's endpoint")
	}
	if !c.HasRegion("gz") || c.HasRegion("bj") || !c.HasRegion("") {
		t.Fatal("HasRegion wrong")
	}
}

func TestRateLimiter(t *testing.T) {
	var waited atomic.Int64
	limiter := rate.NewLimiter(rate.Limit(20), 1)
	c, fake := newPair(t, bcc.Options{Limiter: limiter, Waited: func(d time.Duration) { waited.Add(int64(d)) }})
	for i := range 6 {
		fake.SetStatus("i-"+string(rune('a'+i)), fakebcc.Running)
	}
	start := time.Now()
	for i := range 6 {
		if _, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-" + string(rune('a'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	// 6 calls at 20/s with a burst of 1 take at least 5 × 50 ms.
	if elapsed := time.Since(start); elapsed < 240*time.Millisecond {
		t.Fatalf("6 calls took %v, the limiter did not hold them back", elapsed)
	}
	if time.Duration(waited.Load()) < 200*time.Millisecond {
		t.Fatalf("reported wait %v", time.Duration(waited.Load()))
	}
}

// TestStopOnTurn: OnTurn is called once the stop has its turn under the
// limiter, before it is sent, and once only (not again for the re-signed
// try after RequestExpired); its error means the stop was not sent.
func TestStopOnTurn(t *testing.T) {
	var signed atomic.Int32
	clock := func() time.Time {
		if signed.Add(1) == 1 {
			return time.Now().Add(-time.Hour) // RequestExpired, then signed afresh
		}
		return time.Now()
	}
	turn := make(chan struct{})
	var turns atomic.Int32
	c, fake := newPair(t, bcc.Options{Now: clock, Limiter: limiterFunc(func(ctx context.Context) error { <-turn; return nil })})
	fake.SetStatus("i-a", fakebcc.Running)
	fake.SetStatus("i-b", fakebcc.Running)
	done := make(chan error, 1)
	go func() {
		_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a", OnTurn: func(context.Context) error {
			turns.Add(1)
			return nil
		}})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if n := turns.Load(); n != 0 {
		t.Fatalf("OnTurn called %d times before the stop had its turn", n)
	}
	close(turn)
	if err := <-done; err != nil {
		t.Fatalf("stop: %v", err)
	}
	if n, s := turns.Load(), signed.Load(); n != 1 || s != 2 {
		t.Fatalf("OnTurn called %d times for a stop signed %d times, want once for two", n, s)
	}

	refused := errors.New("not now")
	_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-b", OnTurn: func(context.Context) error { return refused }})
	var te *bcc.TransportError
	if !errors.As(err, &te) || !te.NotSent || !errors.Is(err, refused) {
		t.Fatalf("refused by OnTurn: err = %v, want a NotSent transport error wrapping it", err)
	}
	if n := fake.StopCalls("i-b"); n != 0 {
		t.Fatalf("%d stop calls reached the API after OnTurn refused", n)
	}
}

// limiterFunc is a bcc.Limiter made of a function.
type limiterFunc func(ctx context.Context) error

func (f limiterFunc) Wait(ctx context.Context) error { return f(ctx) }
