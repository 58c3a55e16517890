package bcc_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

// verdict is what the client's predicates say of one error.
type verdict struct {
	transient, credential, notFound, throttled, denied, noCharge, forbidden bool
}

func (v verdict) String() string {
	var on []string
	for _, f := range []struct {
		name string
		on   bool
	}{{"transient", v.transient}, {"credential", v.credential}, {"notFound", v.notFound}, {"throttled", v.throttled},
		{"denied", v.denied}, {"noCharge", v.noCharge}, {"forbidden", v.forbidden}} {
		if f.on {
			on = append(on, f.name)
		}
	}
	if on == nil {
		return "terminal"
	}
	return strings.Join(on, "+")
}

func judge(err error) verdict {
	transient, _ := bcc.Classify(err)
	throttled, _ := bcc.IsThrottled(err)
	return verdict{transient: transient, credential: bcc.IsCredentialError(err), notFound: bcc.IsNotFound(err),
		throttled: throttled, denied: bcc.IsAccessDenied(err), noCharge: bcc.IsNoChargeRefusal(err), forbidden: bcc.IsForbidden(err)}
}

// TestEveryAnswerIsRecognised: each answer of the real service, as the
// simulator gives it over HTTP to a stop or a describe, is an *APIError
// with the API's code, and the client's predicates and Classify (the one
// retry policy) say what it is, so that the worker can give it a truthful
// outcome.
func TestEveryAnswerIsRecognised(t *testing.T) {
	const wrong = "not-the-secret"
	for _, tc := range []struct {
		name     string
		opts     fakebcc.Options
		status   string // of i-x, "" for none
		attrs    fakebcc.Attributes
		secret   string // the client's, creds' when ""
		inject   func(*fakebcc.Server)
		describe bool // describe i-x, else stop it
		noCharge bool
		code     string
		want     string // verdict
	}{
		{name: "409 not Running", status: fakebcc.Stopped, code: bcc.CodeForbidden, want: "forbidden"},
		{name: "404 unknown, stop", code: bcc.CodeNoSuchObject, want: "notFound"},
		{name: "404 unknown, describe", describe: true, code: bcc.CodeNoSuchObject, want: "notFound"},
		{name: "403 prepaid", status: fakebcc.Running, attrs: fakebcc.Attributes{Prepaid: true}, noCharge: true, code: bcc.CodePrePayCannotStopWithNoCharge, want: "noCharge"},
		{name: "403 local disks", status: fakebcc.Running, attrs: fakebcc.Attributes{LocalDisk: true}, noCharge: true, code: bcc.CodeRocv1CannotStopWithNoCharge, want: "noCharge"},
		{name: "403 type", status: fakebcc.Running, attrs: fakebcc.Attributes{NoChargeUnsupported: true}, noCharge: true, code: bcc.CodeInstanceTypeNotSupport, want: "noCharge"},
		{name: "403 denied, stop", status: fakebcc.Running, attrs: fakebcc.Attributes{Denied: true}, code: bcc.CodeAccessDenied, want: "denied"},
		{name: "403 denied, describe", status: fakebcc.Running, attrs: fakebcc.Attributes{Denied: true}, describe: true, code: bcc.CodeAccessDenied, want: "denied"},
		{name: "403 wrong secret", status: fakebcc.Running, secret: wrong, code: bcc.CodeSignatureDoesNotMatch, want: "credential"},
		{name: "403 wrong secret, describe", status: fakebcc.Running, secret: wrong, describe: true, code: bcc.CodeSignatureDoesNotMatch, want: "credential"},
		{name: "403 unknown key", status: fakebcc.Running, opts: fakebcc.Options{Credentials: bce.Credentials{AccessKeyID: "another-ak", SecretAccessKey: "x"}}, code: bcc.CodeInvalidAccessKeyID, want: "credential"},
		{name: "400 clock off, after the re-signed retry", status: fakebcc.Running, opts: fakebcc.Options{ClockSkew: time.Hour}, code: bcc.CodeRequestExpired, want: "credential"},
		{name: "400 clock off, describe", status: fakebcc.Running, opts: fakebcc.Options{ClockSkew: -time.Hour}, describe: true, code: bcc.CodeRequestExpired, want: "credential"},
		{name: "429 over the rate", status: fakebcc.Running, opts: fakebcc.Options{MaxRate: 1}, inject: spend, code: bcc.CodeRequestLimitExceeded, want: "transient+throttled"},
		{name: "503 over the rate", status: fakebcc.Running, opts: fakebcc.Options{MaxRate: 1, ThrottleStatus: 503}, inject: spend, code: bcc.CodeServiceUnavailable, want: "transient+throttled"},
		{name: "500 injected", status: fakebcc.Running, inject: func(s *fakebcc.Server) { s.FailInstance("i-x", 500, bcc.CodeInternalError) }, code: bcc.CodeInternalError, want: "transient"},
		{name: "500 injected, describe", status: fakebcc.Running, inject: func(s *fakebcc.Server) { s.FailDescribe("i-x", 500, bcc.CodeInternalError) }, describe: true, code: bcc.CodeInternalError, want: "transient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if !opts.Credentials.Valid() {
				opts.Credentials = creds
			}
			fake := fakebcc.New(opts)
			srv := httptest.NewServer(fake)
			defer srv.Close()
			if tc.status != "" {
				fake.SetStatus("i-x", tc.status)
				_ = fake.SetAttributes("i-x", tc.attrs)
			}
			if tc.inject != nil {
				tc.inject(fake)
			}
			cr := creds
			if tc.secret != "" {
				cr.SecretAccessKey = tc.secret
			}
			c, err := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: cr})
			if err != nil {
				t.Fatal(err)
			}
			if tc.describe {
				_, _, err = c.DescribeInstance(context.Background(), "", "i-x")
			} else {
				_, err = c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-x", StopWithNoCharge: tc.noCharge})
			}
			var apiErr *bcc.APIError
			if !errors.As(err, &apiErr) || apiErr.Code != tc.code || apiErr.RequestID == "" {
				t.Fatalf("err = %v, want an APIError with code %s", err, tc.code)
			}
			if got := judge(err).String(); got != tc.want {
				t.Errorf("%v is %s, want %s", err, got, tc.want)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

// spend uses the one call a second of a MaxRate 1 simulator.
func spend(s *fakebcc.Server) {
	srv := httptest.NewServer(s)
	defer srv.Close()
	c, _ := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
	_, _, _ = c.DescribeInstance(context.Background(), "", "i-x")
}

// TestPredicates: the predicates decide on the API's answer alone, and
// anything that is not an answer of the API is none of them.
func TestPredicates(t *testing.T) {
	wrapped := func(e *bcc.APIError) error { return fmt.Errorf("stop i-a: %w", e) }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"RequestExpired not yet re-signed", wrapped(&bcc.APIError{StatusCode: 400, Code: bcc.CodeRequestExpired}), "terminal"},
		{"RequestExpired re-signed", wrapped(&bcc.APIError{StatusCode: 400, Code: bcc.CodeRequestExpired, Resigned: true}), "credential"},
		{"InvalidAccessKeyId", wrapped(&bcc.APIError{StatusCode: 403, Code: bcc.CodeInvalidAccessKeyID}), "credential"},
		{"SignatureDoesNotMatch as a 400", wrapped(&bcc.APIError{StatusCode: 400, Code: bcc.CodeSignatureDoesNotMatch}), "credential"},
		{"a 404 without a code (a proxy's)", wrapped(&bcc.APIError{StatusCode: 404}), "terminal"},
		{"InstanceNotFound (Baidu's Terraform provider reads it as gone)", wrapped(&bcc.APIError{StatusCode: 404, Code: "InstanceNotFound"}), "notFound"},
		{"InvalidInstanceId.NotFound", wrapped(&bcc.APIError{StatusCode: 400, Code: "InvalidInstanceId.NotFound"}), "notFound"},
		{"429 without a code", wrapped(&bcc.APIError{StatusCode: 429}), "transient+throttled"},
		{"503 without a code", wrapped(&bcc.APIError{StatusCode: 503}), "transient+throttled"},
		{"502", wrapped(&bcc.APIError{StatusCode: 502}), "transient"},
		{"MalformedJSON", wrapped(&bcc.APIError{StatusCode: 400, Code: bcc.CodeMalformedJSON}), "terminal"},
		{"InappropriateJSON", wrapped(&bcc.APIError{StatusCode: 400, Code: bcc.CodeInappropriateJSON}), "terminal"},
		{"AccessDenied 401 (no Authorization)", wrapped(&bcc.APIError{StatusCode: 401, Code: bcc.CodeAccessDenied}), "terminal"},
		{"a transport error", &bcc.TransportError{Err: errors.New("connection reset")}, "transient"},
		{"not from the API", errors.New("SignatureDoesNotMatch"), "terminal"},
		{"nil", nil, "terminal"},
	} {
		if got := judge(tc.err).String(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if _, after := bcc.IsThrottled(&bcc.APIError{StatusCode: 429, RetryAfter: 3 * time.Second}); after != 3*time.Second {
		t.Errorf("IsThrottled's wait %v, want the Retry-After", after)
	}
}

// TestRequestExpiredMarkedResigned: a RequestExpired the client's second,
// freshly signed attempt also got says so; the first one never reaches
// the caller.
func TestRequestExpiredMarkedResigned(t *testing.T) {
	fake := fakebcc.New(fakebcc.Options{Credentials: creds, ClockSkew: time.Hour})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	fake.SetStatus("i-a", fakebcc.Running)
	c, _ := bcc.New(bcc.Options{Endpoint: srv.URL, Credentials: creds})
	_, err := c.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
	var apiErr *bcc.APIError
	if !errors.As(err, &apiErr) || !apiErr.Resigned {
		t.Fatalf("err = %#v", err)
	}
	if s := fake.Stats(); s.AuthFailures != 2 {
		t.Errorf("%d calls refused, want the first and its re-signed retry", s.AuthFailures)
	}
}
