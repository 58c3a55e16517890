package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/config"
)

func baseEnv(t *testing.T) {
	t.Helper()
	for _, v := range config.WorkerVariables() {
		t.Setenv(v.Name, "")
		os.Unsetenv(v.Name)
		t.Setenv(v.Name+"_FILE", "")
		os.Unsetenv(v.Name + "_FILE")
	}
	t.Setenv("BCE_ACCESS_KEY_ID", "AKID")
	t.Setenv("BCE_SECRET_ACCESS_KEY", "SuperSecretValue")
}

func TestDefaults(t *testing.T) {
	baseEnv(t)
	w, err := config.LoadWorker()
	if err != nil {
		t.Fatal(err)
	}
	if w.NATS.URL != "nats://127.0.0.1:4222" || w.Endpoint != "https://bcc.bj.baidubce.com" || w.HTTPAddr != ":8080" {
		t.Fatalf("defaults: %+v", w)
	}
	if w.AckWait > 30*time.Second || w.Concurrency < 1 || len(w.Backoff) == 0 || !w.Provision || w.WorkerID == "" {
		t.Fatalf("defaults: %+v", w)
	}
	if w.LedgerTTL < 24*time.Hour {
		t.Fatalf("ledger retention %s, want at least 24h", w.LedgerTTL)
	}
}

func TestValues(t *testing.T) {
	baseEnv(t)
	t.Setenv("BCC_ENDPOINTS", "bj=https://bcc.bj.baidubce.com, gz=https://bcc.gz.baidubce.com")
	t.Setenv("BCCSTOP_BACKOFF", "100ms,2s")
	t.Setenv("BCCSTOP_PROTECTED_INSTANCES", "i-db1,i-db2")
	t.Setenv("NATS_URL", "nats://a:4222,nats://b:4222")
	w, err := config.LoadWorker()
	if err != nil {
		t.Fatal(err)
	}
	if w.Endpoints["gz"] != "https://bcc.gz.baidubce.com" || len(w.Endpoints) != 2 {
		t.Errorf("endpoints = %v", w.Endpoints)
	}
	if fmt.Sprint([]time.Duration(w.Backoff)) != "[100ms 2s]" {
		t.Errorf("backoff = %v", w.Backoff)
	}
	if len(w.Protected) != 2 || w.Protected[1] != "i-db2" {
		t.Errorf("protected = %v", w.Protected)
	}
	if w.NATS.URL != "nats://a:4222,nats://b:4222" {
		t.Errorf("NATS_URL = %q", w.NATS.URL)
	}
}

// TestBadValuesNameTheVariable: each malformed or missing setting gives one
// line that names the variable, and never prints a secret.
func TestBadValuesNameTheVariable(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"BCCSTOP_CONCURRENCY", "lots", `BCCSTOP_CONCURRENCY: "lots" is not a whole number`},
		{"BCCSTOP_CONCURRENCY", "0", "BCCSTOP_CONCURRENCY: must be between 1 and 10000"},
		{"BCCSTOP_MAX_DELIVER", "-1", "BCCSTOP_MAX_DELIVER"},
		{"BCCSTOP_ACK_WAIT", "soon", `BCCSTOP_ACK_WAIT: "soon" is not a duration like 30s`},
		{"BCCSTOP_BACKOFF", "1s,never", `BCCSTOP_BACKOFF`},
		{"BCCSTOP_PROVISION", "maybe", `BCCSTOP_PROVISION: "maybe" is not true or false`},
		{"BCC_ENDPOINTS", "bj", `BCC_ENDPOINTS`},
		{"BCC_ENDPOINT", "bcc.bj.baidubce.com", "BCC_ENDPOINT"},
		{"BCCSTOP_LOG_FORMAT", "xml", "BCCSTOP_LOG_FORMAT"},
		{"BCCSTOP_LOG_LEVEL", "loud", "BCCSTOP_LOG_LEVEL"},
		{"BCCSTOP_RATE_LIMIT", "fast", "BCCSTOP_RATE_LIMIT"},
		{"BCCSTOP_RATE_LIMIT", "NaN", "BCCSTOP_RATE_LIMIT: must be a number of calls per second"},
		{"BCCSTOP_RATE_LIMIT", "Inf", "BCCSTOP_RATE_LIMIT: must be a number of calls per second"},
		{"BCCSTOP_RATE_LIMIT", "-Inf", "BCCSTOP_RATE_LIMIT"},
		{"BCCSTOP_RATE_LIMIT", "-5", "BCCSTOP_RATE_LIMIT"},
		{"BCCSTOP_RATE_LIMIT", "1e300", "BCCSTOP_RATE_LIMIT"},
		{"BCCSTOP_MAX_DELIVER", "9223372036854775807", "BCCSTOP_MAX_DELIVER: must be between 1 and 1000"},
		{"BCCSTOP_MAX_DELIVER", "92233720368547758070", `BCCSTOP_MAX_DELIVER: "92233720368547758070" is not a whole number`},
		{"BCCSTOP_ACK_WAIT", "-30s", "BCCSTOP_ACK_WAIT"},
		{"BCCSTOP_ACK_WAIT", "999999999999h", "BCCSTOP_ACK_WAIT"},
		{"BCCSTOP_LEDGER_TTL", "5s", "BCCSTOP_LEDGER_TTL: must be at least 10s"},
		{"BCCSTOP_COMMANDS_STREAM", "BCCSTOP_COMMANDS", "BCCSTOP_COMMANDS_STREAM: BCCSTOP_COMMANDS is the commands stream of releases before layout 2"},
		{"BCCSTOP_COMMANDS_MAX_MSGS", "10", "BCCSTOP_COMMANDS_MAX_MSGS"},
		{"BCCSTOP_MAX_ACK_PENDING", "20000", "BCCSTOP_MAX_ACK_PENDING: must be at least BCCSTOP_COMMANDS_MAX_MSGS (1000000)"},
		{"BCCSTOP_RESULTS_MAX_BYTES", "-1", "BCCSTOP_RESULTS_MAX_BYTES"},
		{"BCCSTOP_CONSUMER", "a.b", "BCCSTOP_CONSUMER"},
		{"BCE_ACCESS_KEY_ID", "", "BCE_ACCESS_KEY_ID is not set"},
		{"BCE_SECRET_ACCESS_KEY", "", "BCE_SECRET_ACCESS_KEY is not set"},
	}
	for _, tc := range tests {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			baseEnv(t)
			t.Setenv(tc.name, tc.value)
			_, err := config.LoadWorker()
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q, want one line containing %q", msg, tc.want)
			}
			if strings.Contains(msg, "SuperSecretValue") {
				t.Fatalf("error leaks the secret: %s", msg)
			}
		})
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	t.Run("read", func(t *testing.T) {
		baseEnv(t)
		os.Unsetenv("BCE_SECRET_ACCESS_KEY")
		t.Setenv("BCE_SECRET_ACCESS_KEY_FILE", write("sk", "from-file\n"))
		t.Setenv("BCE_SESSION_TOKEN_FILE", write("tok", "token-from-file"))
		w, err := config.LoadWorker()
		if err != nil {
			t.Fatal(err)
		}
		if w.SecretAccessKey.Reveal() != "from-file" || w.SessionToken.Reveal() != "token-from-file" {
			t.Fatal("files not read")
		}
		if s := fmt.Sprintf("%v %+v %#v", w, w, w); strings.Contains(s, "from-file") {
			t.Fatalf("formatting the config prints a secret: %s", s)
		}
	})
	t.Run("both set", func(t *testing.T) {
		baseEnv(t)
		t.Setenv("BCE_SECRET_ACCESS_KEY_FILE", write("sk2", "x"))
		_, err := config.LoadWorker()
		if err == nil || !strings.Contains(err.Error(), "BCE_SECRET_ACCESS_KEY and BCE_SECRET_ACCESS_KEY_FILE are both set") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		baseEnv(t)
		os.Unsetenv("BCE_ACCESS_KEY_ID")
		t.Setenv("BCE_ACCESS_KEY_ID_FILE", filepath.Join(dir, "nope"))
		_, err := config.LoadWorker()
		if err == nil || !strings.Contains(err.Error(), "BCE_ACCESS_KEY_ID_FILE: cannot read") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestWorkerVariablesCoverTheContract(t *testing.T) {
	names := map[string]bool{}
	for _, v := range config.WorkerVariables() {
		names[v.Name] = true
	}
	for _, want := range []string{"NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CA", "NATS_CERT", "NATS_KEY",
		"BCE_ACCESS_KEY_ID", "BCE_SECRET_ACCESS_KEY", "BCE_SESSION_TOKEN", "BCC_ENDPOINT", "BCC_ENDPOINTS", "BCCSTOP_HTTP_ADDR",
		"BCCSTOP_CONCURRENCY", "BCCSTOP_MAX_DELIVER", "BCCSTOP_BACKOFF", "BCCSTOP_ACK_WAIT"} {
		if !names[want] {
			t.Errorf("%s is not read", want)
		}
	}
}
