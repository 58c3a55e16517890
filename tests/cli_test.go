package tests

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestDevPrintedCommandGetsAResult runs `bccstop dev` as `make run` does
// (on free ports), then sends exactly the command its printed `nats pub`
// line shows, and gets a succeeded result; SIGINT exits 0.
func TestDevPrintedCommandGetsAResult(t *testing.T) {
	store := t.TempDir()
	p := start(t, nil, "dev", "--nats-port", "0", "--store", store, "--http-addr", freeAddr(t), "--bcc-addr", "127.0.0.1:0")
	out := waitOutput(t, p.Stdout, "Ctrl-C stops everything", 20*time.Second)

	m := regexp.MustCompile(`nats --server (nats://[0-9.:]+) pub bcc\.instance\.stop '([^']+)'`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no nats pub line in:\n%s", out)
	}
	if !strings.Contains(out, store) {
		t.Errorf("the state folder %s is not printed", store)
	}
	url, payload := m[1], m[2]
	waitOutput(t, p.Stderr, "consuming commands", 10*time.Second)

	nc, _ := testenv.Connect(t, url)
	sub, err := nc.SubscribeSync(messages.ResultSubjects)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(messages.CommandSubject, []byte(payload)); err != nil { // a plain publish, like `nats pub`
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no result: %v", err)
	}
	ev, err := messages.DecodeResultEvent(msg.Data)
	if err != nil || ev.Data.Outcome != messages.Succeeded || msg.Subject != "bcc.instance.stop.result.succeeded" {
		t.Fatalf("result %s: %s (%v)", msg.Subject, msg.Data, err)
	}
	if code := p.Signal(syscall.SIGINT, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"worker", "--help"}, {"dev", "--help"}, {"fakebcc", "--help"}, {"version"}} {
		p := start(t, nil, args...)
		if code := p.Wait(10 * time.Second); code != 0 {
			t.Errorf("bccstop %v: exit %d", args, code)
		}
		if len(p.Stdout.String()) < 20 {
			t.Errorf("bccstop %v printed %q", args, p.Stdout.String())
		}
	}
	p := start(t, nil, "worker", "--help")
	p.Wait(10 * time.Second)
	for _, v := range []string{"BCCSTOP_CONCURRENCY", "BCE_SECRET_ACCESS_KEY_FILE", "NATS_URL", "OTEL_"} {
		if !strings.Contains(p.Stdout.String(), v) {
			t.Errorf("worker --help does not mention %s", v)
		}
	}
	p = start(t, nil, "nonsense")
	if code := p.Wait(10 * time.Second); code != 2 || !strings.Contains(p.Stderr.String(), `unknown command "nonsense"`) {
		t.Errorf("unknown command: exit %d, %q", code, p.Stderr.String())
	}
}

// TestFakeBCCBinary: the simulator command serves a signed client.
func TestFakeBCCBinary(t *testing.T) {
	addr := freeAddr(t)
	p := start(t, []string{"BCE_ACCESS_KEY_ID=ak", "BCE_SECRET_ACCESS_KEY=sk"}, "fakebcc", "--addr", addr, "--running", "i-a,i-b", "--stopped", "i-c")
	waitOutput(t, p.Stdout, "listening", 10*time.Second)
	api, err := bcc.New(bcc.Options{Endpoint: "http://" + addr, Credentials: bce.Credentials{AccessKeyID: "ak", SecretAccessKey: "sk"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-a"}); err != nil {
		t.Errorf("stop a Running instance: %v", err)
	}
	if _, err := api.StopInstance(context.Background(), bcc.StopRequest{InstanceID: "i-c"}); !bcc.IsForbidden(err) {
		t.Errorf("stop a Stopped instance: %v, want 409 forbidden", err)
	}
	inst, _, err := api.DescribeInstance(context.Background(), "", "i-a")
	if err != nil || inst.Status != "Stopping" {
		t.Errorf("describe: %+v, %v", inst, err)
	}
	if code := p.Signal(syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestProbe(t *testing.T) {
	srv := testenv.NATS(t)
	_, simURL := testenv.Simulator(t, fakebcc.Options{})
	addr := freeAddr(t)
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, addr), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)
	if code := start(t, nil, "probe", "http://"+addr+"/readyz").Wait(5 * time.Second); code != 0 {
		t.Errorf("probe of a ready worker: exit %d", code)
	}
	if code := start(t, nil, "probe", "http://"+addr+"/nope").Wait(5 * time.Second); code != 1 {
		t.Errorf("probe of a 404: exit %d", code)
	}
	if code := start(t, nil, "probe", "http://"+freeAddr(t)+"/readyz").Wait(5 * time.Second); code != 1 {
		t.Errorf("probe of nothing: exit %d", code)
	}
	w.Signal(syscall.SIGTERM, 10*time.Second)
}

// TestCLIUnreachableSaysWhatToDo: every command that talks to NATS says,
// when no server answers, where it tried and how to point it elsewhere.
func TestCLIUnreachableSaysWhatToDo(t *testing.T) {
	t.Parallel()
	nowhere := "nats://127.0.0.1:1"
	for _, args := range [][]string{
		{"stop", "i-a"}, {"stop", "i-a", "--output", "json"}, {"stop", "--dry-run", "i-a"}, {"stop", "--at", "23:59", "i-a"},
		{"pause"}, {"resume"}, {"status"}, {"schedules"}, {"schedules", "cancel", "x.i-a"},
		{"hold", "i-a", "--for", "1h", "--reason", "x"}, {"holds"}, {"release", "i-a"},
	} {
		_, errOut, code := run(t, []string{"NATS_URL=" + nowhere}, args...)
		if code != 5 {
			t.Errorf("bccstop %s: exit %d, want 5\n%s", strings.Join(args, " "), code, errOut)
		}
		for _, want := range []string{"cannot connect to NATS at " + nowhere, "--server", "NATS_URL", "--context", "bccstop dev", "make run"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("bccstop %s: stderr lacks %q:\n%s", strings.Join(args, " "), want, errOut)
			}
		}
		if n := len(lines(errOut)); n > 2 {
			t.Errorf("bccstop %s: %d lines on stderr for one fault:\n%s", strings.Join(args, " "), n, errOut)
		}
	}
}
