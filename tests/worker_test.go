package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// workerEnv is the environment of a worker subprocess against url and simURL,
// with the secret key given as a file.
func workerEnv(t *testing.T, natsURL, simURL, httpAddr string, extra ...string) []string {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte(testenv.Credentials.SecretAccessKey+"\n"), 0o600)
	return append([]string{
		"NATS_URL=" + natsURL,
		"BCE_ACCESS_KEY_ID=" + testenv.Credentials.AccessKeyID,
		"BCE_SECRET_ACCESS_KEY_FILE=" + secret,
		"BCC_ENDPOINT=" + simURL,
		"BCCSTOP_HTTP_ADDR=" + httpAddr,
		"BCCSTOP_WORKER_ID=subprocess",
		"BCCSTOP_BACKOFF=100ms,200ms",
		"BCCSTOP_ACK_WAIT=3s",
		"BCCSTOP_RATE_LIMIT=0",
	}, extra...)
}

// TestWorkerBinary runs `bccstop worker` with real environment variables:
// it becomes ready, handles a command, and exits 0 on SIGTERM.
func TestWorkerBinary(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	sim.SetStatus("i-subproc1", fakebcc.Running)
	addr := freeAddr(t)
	p := start(t, workerEnv(t, srv.ClientURL(), simURL, addr), "worker")

	waitHTTP(t, "http://"+addr+"/healthz", 200, 10*time.Second)
	waitHTTP(t, "http://"+addr+"/readyz", 200, 10*time.Second)

	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	msg := &nats.Msg{Subject: messages.CommandSubject, Data: []byte(`{"instanceId":"i-subproc1"}`), Header: nats.Header{"Nats-Msg-Id": []string{"sub-1"}}}
	if _, err := js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	d := results.Wait(t, 15*time.Second, "sub-1")["sub-1"].Event
	if d.Data.Outcome != messages.Succeeded || d.Source != "bccstop/subprocess" {
		t.Fatalf("result: %+v", d)
	}
	if code := p.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
	logs := p.Stderr.String()
	if strings.Contains(logs, testenv.Credentials.SecretAccessKey) {
		t.Fatal("the secret key appears in the logs")
	}
	if !strings.Contains(logs, `"msg":"command finished"`) || !strings.Contains(logs, `"outcome":"succeeded"`) {
		t.Errorf("no finished-command log line:\n%s", logs)
	}
}

// TestBadConfigurationStopsStartup: one clear line naming the variable, exit 2.
func TestBadConfigurationStopsStartup(t *testing.T) {
	tests := []struct{ env, want string }{
		{"BCCSTOP_CONCURRENCY=many", `BCCSTOP_CONCURRENCY: "many" is not a whole number`},
		{"BCCSTOP_ACK_WAIT=forever", "BCCSTOP_ACK_WAIT"},
		{"BCC_ENDPOINT=http://bcc.bj.baidubce.com", "http:// is allowed only for a loopback host"},
		{"BCC_ENDPOINTS=gz", "BCC_ENDPOINTS"},
		{"OTEL_TRACES_EXPORTER=zipkin", "OTEL_TRACES_EXPORTER"},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			env := workerEnv(t, "nats://127.0.0.1:1", "http://127.0.0.1:1", freeAddr(t), tc.env)
			p := start(t, env, "worker")
			if code := p.Wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code %d, want 2; stderr:\n%s", code, p.Stderr.String())
			}
			out := strings.TrimSpace(p.Stderr.String())
			if len(lines(out)) != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("stderr %q, want one line containing %q", out, tc.want)
			}
			if strings.Contains(out, testenv.Credentials.SecretAccessKey) {
				t.Fatal("secret in the error")
			}
		})
	}
	t.Run("missing credentials", func(t *testing.T) {
		p := start(t, []string{"NATS_URL=nats://127.0.0.1:1"}, "worker")
		if code := p.Wait(10 * time.Second); code != 2 {
			t.Fatalf("exit code %d", code)
		}
		if out := p.Stderr.String(); !strings.Contains(out, "BCE_ACCESS_KEY_ID is not set") {
			t.Fatalf("stderr %q", out)
		}
	})
}

// TestReadyzWaitsForNATS: /readyz is 503 until the worker consumes,
// which it does once NATS comes up, even if NATS starts after the worker.
func TestReadyzWaitsForNATS(t *testing.T) {
	natsAddr := freeAddr(t)
	_, simURL := testenv.Simulator(t, fakebcc.Options{})
	addr := freeAddr(t)
	p := start(t, workerEnv(t, "nats://"+natsAddr, simURL, addr), "worker")
	waitHTTP(t, "http://"+addr+"/healthz", 200, 10*time.Second)
	waitHTTP(t, "http://"+addr+"/readyz", 503, 5*time.Second)

	_, portStr, _ := strings.Cut(natsAddr, ":")
	port := 0
	for _, c := range portStr {
		port = port*10 + int(c-'0')
	}
	testenv.NATSAt(t, t.TempDir(), port)
	waitHTTP(t, "http://"+addr+"/readyz", 200, 20*time.Second)
	if code := p.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
