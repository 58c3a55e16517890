package tests

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
)

var fakeBCCEnv = []string{"BCE_ACCESS_KEY_ID=ak", "BCE_SECRET_ACCESS_KEY=sk"}

// startFakeBCC starts bccstop fakebcc with args on a free address and
// returns a client of it.
func startFakeBCC(t *testing.T, args ...string) (*proc, *bcc.Client) {
	t.Helper()
	addr := freeAddr(t)
	p := start(t, fakeBCCEnv, append([]string{"fakebcc", "--addr", addr}, args...)...)
	waitOutput(t, p.Stdout, "listening", 10*time.Second)
	api, err := bcc.New(bcc.Options{Endpoint: "http://" + addr, Credentials: bce.Credentials{AccessKeyID: "ak", SecretAccessKey: "sk"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if code := p.Signal(syscall.SIGTERM, 10*time.Second); code != 0 {
			t.Errorf("bccstop fakebcc exit %d: %s", code, p.Stderr.String())
		}
	})
	return p, api
}

// TestFakeBCCHelp: the help says what the simulator answers, and how to
// give instances attributes, run the clock off and throttle.
func TestFakeBCCHelp(t *testing.T) {
	out, _, code := run(t, nil, "fakebcc", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"--max-rate", "--throttle-status", "--clock-skew", "--attr", "--seed",
		"POST /v2/instance/listByInstanceId", "attr:prepaid", `"prepaid":true`,
		"prepaid", "localDisk", "noChargeUnsupported", "denied",
		"Bcc.PrePayCannotStopWithNoCharge", "Bcc.Rocv1CannotStopWithNoCharge", "Bcc.InstanceTypeNotSupportException",
		"AccessDenied", "NoSuchObject", "MalformedJSON", "InappropriateJSON", "InvalidAccessKeyId",
		"SignatureDoesNotMatch", "RequestExpired", "RequestLimitExceeded", "Retry-After", "InternalError",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("bccstop fakebcc --help does not mention %s", want)
		}
	}
}

// TestFakeBCCBinaryAttributes: instances given attributes by --seed and
// --attr get the real service's refusals; the batch describe answers.
func TestFakeBCCBinaryAttributes(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "seed")
	if err := os.WriteFile(seed, []byte("i-pre Running env=prod attr:prepaid\ni-lock Running attr:denied\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, api := startFakeBCC(t, "--seed", seed, "--running", "i-disk,i-ok", "--attr", "i-disk=localDisk,noChargeUnsupported", "--attr", "i-pre=localDisk")
	ctx := context.Background()
	for _, tc := range []struct {
		id   string
		code string
	}{
		{"i-pre", bcc.CodePrePayCannotStopWithNoCharge},
		{"i-disk", bcc.CodeRocv1CannotStopWithNoCharge},
		{"i-lock", bcc.CodeAccessDenied},
		{"i-none", bcc.CodeNoSuchObject},
	} {
		_, err := api.StopInstance(ctx, bcc.StopRequest{InstanceID: tc.id, StopWithNoCharge: true})
		var apiErr *bcc.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != tc.code {
			t.Errorf("stop %s with no charge: %v, want %s", tc.id, err, tc.code)
		}
	}
	if _, err := api.StopInstance(ctx, bcc.StopRequest{InstanceID: "i-pre"}); err != nil {
		t.Errorf("stop i-pre with charge: %v", err)
	}
	got, _, err := api.DescribeInstances(ctx, "", []string{"i-pre", "i-disk", "i-ok", "i-none"})
	if err != nil || len(got) != 3 || got["i-pre"].Status != "Stopping" || got["i-ok"].Status != "Running" {
		t.Errorf("batch describe: %v, %v", got, err)
	}
	if _, _, err := api.DescribeInstances(ctx, "", []string{"i-ok", "i-lock"}); !bcc.IsAccessDenied(err) {
		t.Errorf("batch describe naming a denied instance: %v", err)
	}
}

// TestFakeBCCMaxRate: bccstop fakebcc --max-rate throttles past the rate
// with the status asked for and Retry-After, and lets calls through again
// once the second has passed.
func TestFakeBCCMaxRate(t *testing.T) {
	_, api := startFakeBCC(t, "--running", "i-a", "--max-rate", "3", "--throttle-status", "503")
	ctx := context.Background()
	began := time.Now()
	passed, throttled := 0, 0
	for range 10 {
		_, _, err := api.DescribeInstance(ctx, "", "i-a")
		if err == nil {
			passed++
			continue
		}
		var apiErr *bcc.APIError
		isThrottled, after := bcc.IsThrottled(err)
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Code != bcc.CodeServiceUnavailable || !isThrottled || after != time.Second {
			t.Fatalf("past the rate: %v (Retry-After %v)", err, after)
		}
		throttled++
	}
	took := time.Since(began)
	if throttled == 0 || took < time.Second && passed != 3 {
		t.Fatalf("10 calls in %v: %d let through, %d throttled; want 3 let through within the second", took, passed, throttled)
	}
	time.Sleep(time.Second)
	if _, _, err := api.DescribeInstance(ctx, "", "i-a"); err != nil {
		t.Errorf("after Retry-After: %v", err)
	}
}

// TestFakeBCCClockSkew: with --clock-skew past BCE's window every call is
// RequestExpired, even the client's re-signed retry: a credential error.
func TestFakeBCCClockSkew(t *testing.T) {
	_, api := startFakeBCC(t, "--running", "i-a", "--clock-skew", "-1h")
	_, err := api.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"})
	var apiErr *bcc.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != bcc.CodeRequestExpired || !bcc.IsCredentialError(err) {
		t.Fatalf("stop under a skewed clock: %v", err)
	}
}

// TestFakeBCCBadFlags: flags the simulator cannot honour stop it at once,
// naming the flag, exit 2.
func TestFakeBCCBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--throttle-status", "500"}, "--throttle-status"},
		{[]string{"--max-rate", "-1"}, "--max-rate"},
		{[]string{"--attr", "i-a=prepaid"}, "i-a is not given"},
		{[]string{"--running", "i-a", "--attr", "i-a=fast"}, `attribute "fast"`},
		{[]string{"--running", "i-a", "--attr", "i-a"}, "--attr"},
	} {
		_, errOut, code := run(t, fakeBCCEnv, append([]string{"fakebcc", "--addr", "127.0.0.1:0"}, tc.args...)...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("fakebcc %v: exit %d, stderr %q; want 2 and %s", tc.args, code, errOut, tc.want)
		}
	}
}
