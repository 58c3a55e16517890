package tests

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestProtectedInstancesThroughTheBinary: the protection list protects
// every entry as an operator writes it, spaces included, and a typo stops
// start-up naming the variable instead of protecting nothing.
func TestProtectedInstancesThroughTheBinary(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	sim.Seed(fakebcc.Running, "i-db1", "i-db2", "i-web1")
	addr := freeAddr(t)
	p := start(t, workerEnv(t, srv.ClientURL(), simURL, addr, "BCCSTOP_PROTECTED_INSTANCES= i-db1 ,\ti-db2 "), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)

	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	for _, id := range []string{"i-db1", "i-db2", "i-web1"} {
		msg := &nats.Msg{Subject: messages.CommandSubject, Data: []byte(`{"instanceId":"` + id + `","commandId":"protect-` + id + `"}`)}
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	got := results.Wait(t, 15*time.Second, "protect-i-db1", "protect-i-db2", "protect-i-web1")
	for _, id := range []string{"i-db1", "i-db2"} {
		if d := got["protect-"+id].Event.Data; d.Outcome != messages.Rejected || d.Code != messages.CodeInstanceProtected {
			t.Errorf("%s: %+v, want rejected InstanceProtected", id, d)
		}
		if n := sim.StopCalls(id); n != 0 {
			t.Errorf("%s: %d stop calls, want none", id, n)
		}
	}
	if d := got["protect-i-web1"].Event.Data; d.Outcome != messages.Succeeded {
		t.Errorf("i-web1: %+v", d)
	}
	if logs := p.Stderr.String(); !strings.Contains(logs, `"protected_instances":["i-db1","i-db2"]`) {
		t.Errorf("the start-up line does not show what is protected:\n%s", tail(logs, 2000))
	}
	if code := p.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	for _, tc := range []struct{ value, says string }{
		{"i-db1, not-an-id", `entry 2, "not-an-id", is not an instance id`},
		{"i-db1,,i-db2", "entry 2 is empty"},
		{"i-db1;i-db2", "is not an instance id"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			p := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_PROTECTED_INSTANCES="+tc.value), "worker")
			if code := p.Wait(10 * time.Second); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			out := strings.TrimSpace(p.Stderr.String())
			if len(lines(out)) != 1 || !strings.Contains(out, "BCCSTOP_PROTECTED_INSTANCES") || !strings.Contains(out, tc.says) {
				t.Fatalf("stderr %q, want one line naming BCCSTOP_PROTECTED_INSTANCES and saying %q", out, tc.says)
			}
		})
	}
}

// TestSecretFileWhiteSpace: a secret file's surrounding spaces, tabs and
// newlines are not part of the secret.
func TestSecretFileWhiteSpace(t *testing.T) {
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour,
		Credentials: bce.Credentials{AccessKeyID: testenv.Credentials.AccessKeyID, SecretAccessKey: testenv.Credentials.SecretAccessKey}})
	sim.SetStatus("i-ws1", fakebcc.Running)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("  "+testenv.Credentials.SecretAccessKey+" \t\r\n"), 0o600)
	addr := freeAddr(t)
	p := start(t, workerEnv(t, srv.ClientURL(), simURL, addr, "BCE_SECRET_ACCESS_KEY_FILE="+secret), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	if _, err := js.Publish(context.Background(), messages.CommandSubject, []byte(`{"instanceId":"i-ws1","commandId":"ws-1"}`)); err != nil {
		t.Fatal(err)
	}
	if d := results.Wait(t, 15*time.Second, "ws-1")["ws-1"].Event.Data; d.Outcome != messages.Succeeded {
		t.Fatalf("with a padded secret file: %+v", d)
	}
	p.Signal(syscall.SIGTERM, 15*time.Second)
}

// TestStartupFailureExitCodes: a bad setting is a usage error (2); a port
// already in use is not (1), and the line says which variable to change.
func TestStartupFailureExitCodes(t *testing.T) {
	srv := testenv.NATS(t)
	_, simURL := testenv.Simulator(t, fakebcc.Options{})
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := start(t, workerEnv(t, srv.ClientURL(), simURL, busy.Addr().String()), "worker")
	if code := p.Wait(15 * time.Second); code != 1 {
		t.Fatalf("port in use: exit code %d, want 1; stderr:\n%s", code, p.Stderr.String())
	}
	if out := p.Stderr.String(); !strings.Contains(out, "BCCSTOP_HTTP_ADDR") || !strings.Contains(out, "address already in use") {
		t.Fatalf("stderr does not say the port is taken:\n%s", out)
	}

	p = start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t), "BCCSTOP_LEDGER_TTL=5s"), "worker")
	if code := p.Wait(10 * time.Second); code != 2 {
		t.Fatalf("short ledger TTL: exit code %d, want 2", code)
	}
	if out := p.Stderr.String(); !strings.Contains(out, "BCCSTOP_LEDGER_TTL") || !strings.Contains(out, "twice BCCSTOP_ACK_WAIT") {
		t.Fatalf("stderr:\n%s", out)
	}
}

// TestUnreachableNATSIsSaidPlainly: a worker that cannot reach NATS names
// the servers it tries and says it is not connected, rather than blaming a
// stream.
func TestUnreachableNATSIsSaidPlainly(t *testing.T) {
	t.Parallel()
	natsAddr := freeAddr(t)
	_, simURL := testenv.Simulator(t, fakebcc.Options{})
	addr := freeAddr(t)
	p := start(t, workerEnv(t, "nats://"+natsAddr, simURL, addr), "worker")
	out := waitOutput(t, p.Stderr, "not connected to NATS", 15*time.Second)
	if !strings.Contains(out, `"nats":"nats://`+natsAddr+`"`) {
		t.Errorf("the start-up line does not name the NATS servers:\n%s", tail(out, 2000))
	}
	if strings.Contains(out, "stream") && !strings.Contains(out, "not connected") {
		t.Errorf("misleading error:\n%s", out)
	}
	p.Signal(syscall.SIGTERM, 15*time.Second)
}
