package tests

import (
	"context"
	"io"
	"net/http"
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

// TestSecretsNeverPrinted runs the worker with known secrets (BCE secret
// key, session token, NATS password and token) through success, an API
// failure and start-up errors, at debug level with spans printed to the
// console, and asserts no secret appears in any output, event or error.
func TestSecretsNeverPrinted(t *testing.T) {
	const (
		secretKey = "SECRET-KEY-5f2a9c"
		token     = "SESSION-TOKEN-77b1e"
		natsPass  = "NATS-PASSWORD-c0ffee"
		natsToken = "NATS-TOKEN-deadbeef"
	)
	secrets := []string{secretKey, token, natsPass, natsToken}
	creds := bce.Credentials{AccessKeyID: "AKID-visible", SecretAccessKey: secretKey, SessionToken: token}
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{Credentials: creds, StopDuration: time.Hour})
	sim.SetStatus("i-secret-ok", fakebcc.Running)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token), 0o600)
	base := []string{
		"NATS_URL=" + srv.ClientURL(),
		"BCE_ACCESS_KEY_ID=AKID-visible",
		"BCE_SECRET_ACCESS_KEY=" + secretKey,
		"BCE_SESSION_TOKEN_FILE=" + tokenFile,
		"BCC_ENDPOINT=" + simURL,
		"BCCSTOP_LOG_LEVEL=debug",
		"BCCSTOP_BACKOFF=50ms",
		"BCCSTOP_MAX_DELIVER=2",
		"OTEL_TRACES_EXPORTER=console",
	}
	var outputs []string
	check := func(what, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the secret %q:\n%s", what, s, tail(text, 2000))
			}
		}
	}

	// Success and API failures: one stop that works, one that the API
	// refuses (unknown instance), one that fails transiently until the
	// budget is spent.
	sim.SetStatus("i-secret-503", fakebcc.Running)
	sim.FailInstance("i-secret-503", 503, "ServiceUnavailable")
	addr := freeAddr(t)
	w := start(t, append(base, "BCCSTOP_HTTP_ADDR="+addr), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	for _, p := range []string{`{"instanceId":"i-secret-ok","commandId":"ok"}`, `{"instanceId":"i-missing","commandId":"missing"}`, `{"instanceId":"i-secret-503","commandId":"flaky"}`, `{"instanceId":"i-secret-ok","bogus":"` + secretKey[:3] + `"}`} {
		if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: messages.CommandSubject, Data: []byte(p)}); err != nil {
			t.Fatal(err)
		}
	}
	got := results.Wait(t, 20*time.Second, "ok", "missing", "flaky")
	if got["ok"].Event.Data.Outcome != messages.Succeeded || got["missing"].Event.Data.Outcome != messages.Failed || got["flaky"].Event.Data.Outcome != messages.Failed {
		t.Errorf("outcomes: %s %s %s", got["ok"].Event.Data.Outcome, got["missing"].Event.Data.Outcome, got["flaky"].Event.Data.Outcome)
	}
	for _, r := range results.All() {
		check("result event", r.Event.Data.Message+r.Event.Data.Code)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	check("/metrics", metrics)
	w.Signal(syscall.SIGTERM, 15*time.Second)
	outputs = append(outputs, w.Stdout.String(), w.Stderr.String())
	if !strings.Contains(w.Stderr.String(), "AKID-visible") {
		t.Error("the access key id (not secret) should be visible in the logs; are logs captured at all?")
	}

	// A signature the service refuses: the simulator wants another secret.
	other, otherURL := testenv.Simulator(t, fakebcc.Options{Credentials: bce.Credentials{AccessKeyID: "AKID-visible", SecretAccessKey: "different"}})
	other.SetStatus("i-secret-ok", fakebcc.Running)
	srv2 := testenv.NATS(t)
	w = start(t, append(base, "NATS_URL="+srv2.ClientURL(), "BCC_ENDPOINT="+otherURL, "BCCSTOP_HTTP_ADDR="+freeAddr(t)), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	_, js2 := testenv.Connect(t, srv2.ClientURL())
	_, _ = js2.Publish(context.Background(), messages.CommandSubject, []byte(`{"instanceId":"i-secret-ok","commandId":"sig"}`))
	waitOutput(t, w.Stderr, "SignatureDoesNotMatch", 15*time.Second)
	w.Signal(syscall.SIGTERM, 15*time.Second)
	outputs = append(outputs, w.Stdout.String(), w.Stderr.String())

	// Start-up errors, each with every secret set.
	withNATSAuth := append(base[:len(base):len(base)], "NATS_PASSWORD="+natsPass, "NATS_TOKEN="+natsToken)
	for _, bad := range [][]string{
		{"BCCSTOP_CONCURRENCY=" + secretKey},
		{"NATS_USER=someone"},
		{"BCC_ENDPOINT=ftp://" + secretKey},
		{"BCE_SECRET_ACCESS_KEY_FILE=/nonexistent/" + "file"},
	} {
		p := start(t, append(withNATSAuth[:len(withNATSAuth):len(withNATSAuth)], bad...), "worker")
		if code := p.Wait(10 * time.Second); code != 2 {
			t.Errorf("%v: exit %d", bad, code)
		}
		text := p.Stderr.String()
		if bad[0] == "BCCSTOP_CONCURRENCY="+secretKey {
			// The variable's own (non-secret) value is echoed to help; the
			// secret variables never are.
			text = strings.ReplaceAll(text, `"`+secretKey+`"`, "")
		}
		if bad[0] == "BCC_ENDPOINT=ftp://"+secretKey {
			text = strings.ReplaceAll(text, "ftp://"+secretKey, "")
		}
		outputs = append(outputs, p.Stdout.String(), text)
	}
	for i, out := range outputs {
		check("output "+string(rune('A'+i)), out)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
