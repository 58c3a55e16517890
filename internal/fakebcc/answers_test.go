package fakebcc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

// rawCall is one request to the simulator, signed with creds at the
// client's clock (time.Now unless at is set).
type rawCall struct {
	method, path, query, body string
	creds                     bce.Credentials // creds when zero
	at                        time.Time
}

// answer is what the simulator said: the status, the BCE code of an error
// body ("" for a success) and the headers.
type answer struct {
	status int
	code   string
	header http.Header
	body   []byte
}

func (c rawCall) send(t *testing.T, base string) answer {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.RawQuery = c.query
	if c.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if !c.creds.Valid() {
		c.creds = creds
	}
	if c.at.IsZero() {
		c.at = time.Now()
	}
	bce.NewSigner(c.creds, 0).Sign(req, c.at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: raw}
	if resp.StatusCode >= 300 {
		var e struct{ RequestID, Code, Message string }
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatalf("error answer %d is not a BCE error body: %q", resp.StatusCode, raw)
		}
		if e.RequestID == "" || e.RequestID != resp.Header.Get("X-Bce-Request-Id") || e.Message == "" {
			t.Fatalf("error body %q: requestId, message and the x-bce-request-id header must be there and agree", raw)
		}
		a.code = e.Code
	}
	return a
}

func stopCall(id, body string) rawCall {
	return rawCall{method: http.MethodPut, path: "/v2/instance/" + id, query: "stop", body: body}
}

func describeCall(id string) rawCall {
	return rawCall{method: http.MethodGet, path: "/v2/instance/" + id}
}

// TestAnswers: every answer the simulator gives to stop and describe, as
// the real service gives it, with the instance's state after the call:
// only an accepted stop changes it.
func TestAnswers(t *testing.T) {
	const (
		plain    = `{"forceStop":false}`
		noCharge = `{"forceStop":false,"stopWithNoCharge":true}`
	)
	for _, tc := range []struct {
		name   string
		opts   fakebcc.Options       // Credentials are set
		status string                // of i-x before the call; "" for no instance
		attrs  fakebcc.Attributes    // of i-x
		inject func(*fakebcc.Server) // failures to inject, if any
		call   rawCall               // about i-x
		want   int                   // status
		code   string                // BCE code, "" on success
		after  string                // status of i-x after the call ("" for none)
	}{
		{name: "stop Running", status: fakebcc.Running, call: stopCall("i-x", plain), want: 200, after: fakebcc.Stopping},
		{name: "stop Running, forced, with no charge", status: fakebcc.Running, call: stopCall("i-x", `{"forceStop":true,"stopWithNoCharge":true}`), want: 200, after: fakebcc.Stopping},
		{name: "stop with an empty body", status: fakebcc.Running, call: stopCall("i-x", ""), want: 200, after: fakebcc.Stopping},
		{name: "stop Stopped", status: fakebcc.Stopped, call: stopCall("i-x", plain), want: 409, code: "Instance.StopInstanceOperationForbidden", after: fakebcc.Stopped},
		{name: "stop Starting", status: fakebcc.Starting, call: stopCall("i-x", plain), want: 409, code: "Instance.StopInstanceOperationForbidden", after: fakebcc.Starting},
		{name: "stop unknown", call: stopCall("i-x", plain), want: 404, code: "NoSuchObject"},
		{name: "describe unknown", call: describeCall("i-x"), want: 404, code: "NoSuchObject"},
		{name: "describe Running", status: fakebcc.Running, call: describeCall("i-x"), want: 200, after: fakebcc.Running},

		{name: "prepaid, stop with no charge", status: fakebcc.Running, attrs: fakebcc.Attributes{Prepaid: true}, call: stopCall("i-x", noCharge), want: 403, code: "Bcc.PrePayCannotStopWithNoCharge", after: fakebcc.Running},
		{name: "prepaid, plain stop", status: fakebcc.Running, attrs: fakebcc.Attributes{Prepaid: true}, call: stopCall("i-x", plain), want: 200, after: fakebcc.Stopping},
		{name: "local disks, stop with no charge", status: fakebcc.Running, attrs: fakebcc.Attributes{LocalDisk: true}, call: stopCall("i-x", noCharge), want: 403, code: "Bcc.Rocv1CannotStopWithNoCharge", after: fakebcc.Running},
		{name: "local disks, plain stop", status: fakebcc.Running, attrs: fakebcc.Attributes{LocalDisk: true}, call: stopCall("i-x", plain), want: 200, after: fakebcc.Stopping},
		{name: "type without no-charge stop, stop with no charge", status: fakebcc.Running, attrs: fakebcc.Attributes{NoChargeUnsupported: true}, call: stopCall("i-x", noCharge), want: 403, code: "Bcc.InstanceTypeNotSupportException", after: fakebcc.Running},
		{name: "type without no-charge stop, plain stop", status: fakebcc.Running, attrs: fakebcc.Attributes{NoChargeUnsupported: true}, call: stopCall("i-x", plain), want: 200, after: fakebcc.Stopping},
		{name: "prepaid and stopped, stop with no charge: the instance's refusal first", status: fakebcc.Stopped, attrs: fakebcc.Attributes{Prepaid: true}, call: stopCall("i-x", noCharge), want: 403, code: "Bcc.PrePayCannotStopWithNoCharge", after: fakebcc.Stopped},
		{name: "denied, stop", status: fakebcc.Running, attrs: fakebcc.Attributes{Denied: true}, call: stopCall("i-x", plain), want: 403, code: "AccessDenied", after: fakebcc.Running},
		{name: "denied, describe", status: fakebcc.Running, attrs: fakebcc.Attributes{Denied: true}, call: describeCall("i-x"), want: 403, code: "AccessDenied", after: fakebcc.Running},

		{name: "body not JSON", status: fakebcc.Running, call: stopCall("i-x", `{"forceStop":tru`), want: 400, code: "MalformedJSON", after: fakebcc.Running},
		{name: "body with trailing bytes", status: fakebcc.Running, call: stopCall("i-x", `{"forceStop":true} {}`), want: 400, code: "MalformedJSON", after: fakebcc.Running},
		{name: "body of a wrong type", status: fakebcc.Running, call: stopCall("i-x", `{"forceStop":"yes"}`), want: 400, code: "InappropriateJSON", after: fakebcc.Running},
		{name: "body with an unknown field", status: fakebcc.Running, call: stopCall("i-x", `{"forceStop":true,"force":true}`), want: 400, code: "InappropriateJSON", after: fakebcc.Running},
		{name: "body not an object", status: fakebcc.Running, call: stopCall("i-x", `[true]`), want: 400, code: "InappropriateJSON", after: fakebcc.Running},
		{name: "body null", status: fakebcc.Running, call: stopCall("i-x", `null`), want: 400, code: "InappropriateJSON", after: fakebcc.Running},

		{name: "unknown access key", status: fakebcc.Running, call: withCreds(stopCall("i-x", plain), bce.Credentials{AccessKeyID: "other-ak", SecretAccessKey: creds.SecretAccessKey}), want: 403, code: "InvalidAccessKeyId", after: fakebcc.Running},
		{name: "wrong secret", status: fakebcc.Running, call: withCreds(stopCall("i-x", plain), bce.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "not-the-secret"}), want: 403, code: "SignatureDoesNotMatch", after: fakebcc.Running},
		{name: "wrong secret, describe", status: fakebcc.Running, call: withCreds(describeCall("i-x"), bce.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: "not-the-secret"}), want: 403, code: "SignatureDoesNotMatch", after: fakebcc.Running},
		{name: "simulator's clock 1h ahead: the client's signature has expired", opts: fakebcc.Options{ClockSkew: time.Hour}, status: fakebcc.Running, call: stopCall("i-x", plain), want: 400, code: "RequestExpired", after: fakebcc.Running},
		{name: "simulator's clock 20m behind: the client's signature is from the future", opts: fakebcc.Options{ClockSkew: -20 * time.Minute}, status: fakebcc.Running, call: stopCall("i-x", plain), want: 400, code: "RequestExpired", after: fakebcc.Running},
		{name: "simulator's clock 10m behind: inside BCE's 15 minutes", opts: fakebcc.Options{ClockSkew: -10 * time.Minute}, status: fakebcc.Running, call: stopCall("i-x", plain), want: 200, after: fakebcc.Stopping},
		{name: "simulator's clock 25m ahead: inside the signature's 30 minutes", opts: fakebcc.Options{ClockSkew: 25 * time.Minute}, status: fakebcc.Running, call: stopCall("i-x", plain), want: 200, after: fakebcc.Stopping},
		{name: "clock skew, describe", opts: fakebcc.Options{ClockSkew: time.Hour}, status: fakebcc.Running, call: describeCall("i-x"), want: 400, code: "RequestExpired", after: fakebcc.Running},

		{name: "injected 500", status: fakebcc.Running, inject: func(s *fakebcc.Server) { s.FailInstance("i-x", 500, "InternalError") }, call: stopCall("i-x", plain), want: 500, code: "InternalError", after: fakebcc.Running},
		{name: "injected 500, describe", status: fakebcc.Running, inject: func(s *fakebcc.Server) { s.FailDescribe("i-x", 500, "InternalError") }, call: describeCall("i-x"), want: 500, code: "InternalError", after: fakebcc.Running},
		{name: "every call fails with 500", status: fakebcc.Running, inject: func(s *fakebcc.Server) { s.SetFaults(fakebcc.Faults{Rate: 1, Kinds: []int{500}}) }, call: stopCall("i-x", plain), want: 500, code: "InternalError", after: fakebcc.Running},
		{name: "over the rate", opts: fakebcc.Options{MaxRate: 1}, status: fakebcc.Running, inject: spendRate, call: stopCall("i-x", plain), want: 429, code: "RequestLimitExceeded", after: fakebcc.Running},
		{name: "over the rate, answered 503", opts: fakebcc.Options{MaxRate: 1, ThrottleStatus: 503}, status: fakebcc.Running, inject: spendRate, call: stopCall("i-x", plain), want: 503, code: "ServiceUnavailable", after: fakebcc.Running},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Credentials = creds
			fake := fakebcc.New(opts)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			if tc.status != "" {
				fake.SetStatus("i-x", tc.status)
				if err := fake.SetAttributes("i-x", tc.attrs); err != nil {
					t.Fatal(err)
				}
			}
			if tc.inject != nil {
				tc.inject(fake)
			}
			before := len(fake.History())
			got := tc.call.send(t, srv.URL)
			if got.status != tc.want || got.code != tc.code {
				t.Fatalf("answer %d %q (%s), want %d %q", got.status, got.code, got.body, tc.want, tc.code)
			}
			if got.header.Get("X-Bce-Request-Id") == "" {
				t.Error("no x-bce-request-id header")
			}
			if st, _ := fake.Status("i-x"); st != tc.after {
				t.Errorf("i-x is %q after the call, want %q", st, tc.after)
			}
			if tc.want == 429 || tc.want == 503 {
				if ra := got.header.Get("Retry-After"); ra != "1" {
					t.Errorf("Retry-After %q, want 1", ra)
				}
			}
			// The call is in the history, refused or not, with its answer.
			h := fake.History()
			if len(h) != before+1 {
				t.Fatalf("history grew by %d calls, want 1", len(h)-before)
			}
			last := h[len(h)-1]
			if last.Instance != "i-x" || last.Status != tc.want || last.Code != tc.code || last.Applied != (tc.after == fakebcc.Stopping && tc.status == fakebcc.Running) {
				t.Errorf("history records %+v", last)
			}
			if last.Throttled != (tc.name == "over the rate" || strings.HasPrefix(tc.name, "over the rate,")) {
				t.Errorf("history: throttled = %v", last.Throttled)
			}
		})
	}
}

func withCreds(c rawCall, cr bce.Credentials) rawCall { c.creds = cr; return c }

// spendRate uses the one call a second of a MaxRate 1 simulator, on an
// instance the test does not look at.
func spendRate(s *fakebcc.Server) {
	s.SetStatus("i-other", fakebcc.Running)
	srv := httptest.NewServer(s)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/instance/i-other", nil)
	bce.NewSigner(creds, 0).Sign(req, time.Now())
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}
