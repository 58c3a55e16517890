package fakebcc_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

// testClock is a clock the test moves; the simulator and the signer share it.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// TestMaxRate: past MaxRate calls in any one second (a sliding window, not
// a calendar second, over every operation), calls are refused 429 or 503
// with Retry-After and change nothing; calls at the rate or under it all
// pass; the history shows no second with more than MaxRate calls let
// through.
func TestMaxRate(t *testing.T) {
	for _, status := range []int{429, 503} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			clock := &testClock{t: t0}
			fake := fakebcc.New(fakebcc.Options{Credentials: creds, Now: clock.Now, MaxRate: 3, ThrottleStatus: status})
			srv := httptest.NewServer(fake)
			defer srv.Close()
			fake.Seed(fakebcc.Running, "i-a", "i-b")
			at := func(d time.Duration, c rawCall) answer {
				t.Helper()
				clock.Set(t0.Add(d))
				c.at = t0.Add(d)
				return c.send(t, srv.URL)
			}
			wantCode := map[int]string{429: "RequestLimitExceeded", 503: "ServiceUnavailable"}[status]
			expect := func(what string, got answer, passes bool) {
				t.Helper()
				switch {
				case passes && got.status != 200:
					t.Errorf("%s: %d %s, want it let through", what, got.status, got.body)
				case !passes && (got.status != status || got.code != wantCode || got.header.Get("Retry-After") != "1"):
					t.Errorf("%s: %d %q Retry-After %q, want %d %s Retry-After 1", what, got.status, got.code, got.header.Get("Retry-After"), status, wantCode)
				}
			}

			// Three calls of three operations fill the second.
			expect("describe at 0", at(0, describeCall("i-a")), true)
			expect("list at 0", at(0, rawCall{method: http.MethodGet, path: "/v2/instance"}), true)
			expect("batch describe at 0.2s", at(200*time.Millisecond, batchCall("", idsBody("i-a"))), true)
			// A fourth is refused, and a refused stop stops nothing.
			expect("stop at 0.5s", at(500*time.Millisecond, stopCall("i-b", `{"forceStop":false}`)), false)
			if st, _ := fake.Status("i-b"); st != fakebcc.Running {
				t.Errorf("a throttled stop left i-b %s", st)
			}
			expect("describe at 0.999s", at(999*time.Millisecond, describeCall("i-a")), false)
			// A call refused for its signature is not let through, and does not count.
			if got := at(999*time.Millisecond, withCreds(describeCall("i-a"), bce.Credentials{AccessKeyID: "test-ak", SecretAccessKey: "wrong"})); got.code != "SignatureDoesNotMatch" {
				t.Errorf("wrong secret: %d %q", got.status, got.code)
			}
			// At 1s the two calls of 0 have left the window; the one of 0.2s has not.
			expect("stop at 1s", at(time.Second, stopCall("i-b", `{"forceStop":false}`)), true)
			expect("describe at 1s", at(time.Second, describeCall("i-b")), true)
			expect("describe at 1.1s", at(1100*time.Millisecond, describeCall("i-b")), false)
			expect("describe at 1.2s", at(1200*time.Millisecond, describeCall("i-b")), true)

			// Exactly at the rate, for three seconds: every call passes.
			for i := range 9 {
				d := 3*time.Second + time.Duration(i)*(time.Second/3+time.Millisecond)
				expect("at the rate", at(d, describeCall("i-a")), true)
			}
			// Under it, likewise.
			for i := range 4 {
				expect("under the rate", at(7*time.Second+time.Duration(i)*500*time.Millisecond, describeCall("i-a")), true)
			}

			s := fake.Stats()
			if s.Throttled != 3 || s.StopCalls != 2 || s.StopsApplied != 1 || s.AuthFailures != 1 {
				t.Errorf("stats %+v", s)
			}
			throttled := 0
			for _, c := range fake.History() {
				if c.Throttled {
					throttled++
					if c.Status != status || c.Code != wantCode || c.Applied {
						t.Errorf("a throttled call recorded as %+v", c)
					}
				}
			}
			if throttled != 3 {
				t.Errorf("%d throttled calls in the history, want 3", throttled)
			}
			if peak := fake.PeakRate(time.Second); peak != 3 {
				t.Errorf("at most %d calls let through in one second, want 3", peak)
			}
		})
	}
}

// TestMaxRateUnderLoad: many clients at once, on the real clock, well past
// the rate: no second ever lets more than MaxRate through, and every
// refusal carries Retry-After.
func TestMaxRateUnderLoad(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds, MaxRate: 20})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	fake.Seed(fakebcc.Running, "i-a")
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	for range 8 {
		wg.Go(func() {
			for range 25 {
				got := describeCall("i-a").send(t, srv.URL)
				if got.status == 429 && got.header.Get("Retry-After") == "" {
					t.Error("429 without Retry-After")
				}
				mu.Lock()
				counts[got.status]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if counts[200]+counts[429] != 200 || counts[429] == 0 {
		t.Fatalf("answers %v", counts)
	}
	if peak := fake.PeakRate(time.Second); peak > 20 {
		t.Fatalf("%d calls let through within one second, past the rate of 20", peak)
	}
	t.Logf("200 calls from 8 clients at once: %v", counts)
}
