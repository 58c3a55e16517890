package tests

// Issue 20: a misconfigured worker (wrong secret, clock off) never burns
// commands: it hands them back, says why on /readyz, logs it once, and goes
// on once its credentials work again.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// readyz returns /readyz's status and body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	sb.Write(buf[:n])
	return resp.StatusCode, sb.String()
}

// TestWrongSecretNeverBurnsCommands: a worker started with a wrong secret
// in its secret file, against a backlog of 500 commands, gives none of them
// a result: /readyz answers 503 with the API's reason, the log says it once
// (without the secret), the metrics count it. Once the file holds the right
// secret (a Secret's update rewrites it), the worker goes on by itself and
// all 500 succeed, each instance stopped once.
func TestWrongSecretNeverBurnsCommands(t *testing.T) {
	t.Parallel()
	const n = 500
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	_, js := testenv.Connect(t, srv.ClientURL())
	addr := freeAddr(t)
	secret := filepath.Join(t.TempDir(), "secret")
	const wrong = "not-the-secret-at-all"
	if err := os.WriteFile(secret, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, addr, "BCE_SECRET_ACCESS_KEY_FILE="+secret, "BCCSTOP_CONCURRENCY=32"), "worker")
	waitHTTP(t, "http://"+addr+"/healthz", 200, 30*time.Second)
	waitForStreams(t, js)
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	var ids []string
	for i := range n {
		inst, id := fmt.Sprintf("i-secret%03d", i), fmt.Sprintf("secret-%03d", i)
		sim.SetStatus(inst, fakebcc.Running)
		ids = append(ids, id)
		publishCommand(t, js, fmt.Sprintf(`{"commandId":%q,"instanceId":%q}`, id, inst))
	}

	var body string
	testenv.Eventually(t, 20*time.Second, "/readyz to say the credentials are refused", func() bool {
		code, b := readyz(t, addr)
		body = b
		return code == http.StatusServiceUnavailable && strings.Contains(b, "SignatureDoesNotMatch")
	})
	if !strings.Contains(body, "credentials") {
		t.Errorf("/readyz says %q; want it to name the credentials", body)
	}
	time.Sleep(2 * 5 * time.Second) // two probes, and the commands handed back are offered again
	if got := results.All(); len(got) != 0 {
		t.Fatalf("%d results while the credentials are refused (first: %s %s); want none", len(got), got[0].Event.Data.Outcome, got[0].Event.Data.Code)
	}
	if code, _ := readyz(t, addr); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz answers %d while the credentials are refused", code)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{"bccstop_api_credentials_ok 0", "bccstop_api_credentials_refused_total", "bccstop_worker_ready 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if refused := countLines(w.Stderr.String(), "refuses this worker's credentials"); refused != 1 {
		t.Errorf("the refusal is logged %d times, want once:\n%s", refused, testenv.Tail(w.Stderr.String(), 3000))
	}
	if strings.Contains(w.Stderr.String(), wrong) || strings.Contains(w.Stderr.String(), testenv.Credentials.SecretAccessKey) {
		t.Error("a secret is in the log")
	}
	stopsBefore := 0
	for _, c := range sim.History() {
		if c.Op == fakebcc.OpStop {
			stopsBefore++
		}
	}
	if stopsBefore > 64 {
		t.Errorf("%d stop calls with the wrong secret; the worker should stop taking commands after the first refusals", stopsBefore)
	}

	// The Secret is fixed: the file is rewritten.
	if err := os.WriteFile(secret, []byte(testenv.Credentials.SecretAccessKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := results.Wait(t, 60*time.Second, ids...)
	for _, id := range ids {
		if d := got[id].Event.Data; d.Outcome != messages.Succeeded {
			t.Errorf("%s: %s %s (%s)", id, d.Outcome, d.Code, d.Message)
		}
	}
	applied := sim.AppliedStops()
	for i := range n {
		if inst := fmt.Sprintf("i-secret%03d", i); applied[inst] != 1 {
			t.Errorf("%s stopped %d times, want once", inst, applied[inst])
		}
	}
	if code, b := readyz(t, addr); code != http.StatusOK {
		t.Errorf("/readyz after the fix: %d %s", code, b)
	}
	if !strings.Contains(w.Stderr.String(), "accepts this worker's credentials again") {
		t.Error("the log does not say the credentials work again")
	}
}

// TestClockOffNeverBurnsCommands: with the worker's clock off by more than
// the API allows (the simulator's clock an hour ahead), every call is
// RequestExpired even re-signed: the command is handed back, /readyz says
// RequestExpired, and once the clock is right the command succeeds.
func TestClockOffNeverBurnsCommands(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour, ClockSkew: time.Hour})
	_, js := testenv.Connect(t, srv.ClientURL())
	addr := freeAddr(t)
	start(t, workerEnv(t, srv.ClientURL(), simURL, addr), "worker")
	waitHTTP(t, "http://"+addr+"/healthz", 200, 30*time.Second)
	waitForStreams(t, js)
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	sim.SetStatus("i-clock1", fakebcc.Running)
	publishCommand(t, js, `{"commandId":"clock-1","instanceId":"i-clock1"}`)
	testenv.Eventually(t, 20*time.Second, "/readyz to say RequestExpired", func() bool {
		code, b := readyz(t, addr)
		return code == http.StatusServiceUnavailable && strings.Contains(b, "RequestExpired") && strings.Contains(b, "clock")
	})
	time.Sleep(2 * time.Second)
	if got := results.All(); len(got) != 0 {
		t.Fatalf("a result while the clock is off: %s %s", got[0].Event.Data.Outcome, got[0].Event.Data.Code)
	}
	sim.SetClockSkew(0)
	if d := results.Wait(t, 30*time.Second, "clock-1")["clock-1"].Event.Data; d.Outcome != messages.Succeeded {
		t.Errorf("clock-1: %s %s (%s)", d.Outcome, d.Code, d.Message)
	}
	if n := sim.AppliedStops()["i-clock1"]; n != 1 {
		t.Errorf("i-clock1 stopped %d times", n)
	}
}

// countLines counts the lines of s that contain sub.
func countLines(s, sub string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
