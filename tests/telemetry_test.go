package tests

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestOTLPExportAndFlushOnShutdown: with OTEL_EXPORTER_OTLP_ENDPOINT set,
// the worker exports its spans over OTLP/HTTP, and with
// OTEL_METRICS_EXPORTER=otlp its metrics too (besides /metrics); the spans
// and counts of the last command reach the collector by the time the process
// exits (flushed on SIGTERM).
func TestOTLPExportAndFlushOnShutdown(t *testing.T) {
	var mu sync.Mutex
	var bodies, metrics [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		switch r.URL.Path {
		case "/v1/traces":
			bodies = append(bodies, b)
		case "/v1/metrics":
			metrics = append(metrics, b)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{})
	sim.SetStatus("i-otlp", fakebcc.Running)
	w := start(t, workerEnv(t, srv.ClientURL(), simURL, freeAddr(t),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_SERVICE_NAME=bccstop-under-test", "OTEL_BSP_SCHEDULE_DELAY=60000",
		"OTEL_METRICS_EXPORTER=otlp", "OTEL_METRIC_EXPORT_INTERVAL=600000"), "worker")
	waitOutput(t, w.Stderr, "consuming commands", 15*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	if _, err := js.Publish(context.Background(), messages.CommandSubject, []byte(`{"instanceId":"i-otlp","commandId":"otlp-1"}`)); err != nil {
		t.Fatal(err)
	}
	results.Wait(t, 10*time.Second, "otlp-1")
	mu.Lock()
	before, metricsBefore := len(bodies), len(metrics)
	mu.Unlock()
	if before != 0 || metricsBefore != 0 {
		t.Fatalf("%d span and %d metric exports before shutdown, with a 60s batch delay and a 10m interval", before, metricsBefore)
	}
	if code := w.Signal(syscall.SIGTERM, 15*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	all := ""
	for _, b := range bodies {
		all += string(b)
	}
	for _, want := range []string{"process bcc.instance.stop", "send bcc.instance.stop.result.succeeded", "bccstop-under-test", "otlp-1"} {
		if !strings.Contains(all, want) {
			t.Errorf("exported spans do not mention %q", want)
		}
	}
	all = ""
	for _, b := range metrics {
		all += string(b)
	}
	for _, want := range []string{"bccstop.commands", "succeeded", "bccstop.command.duration", "bccstop-under-test"} {
		if !strings.Contains(all, want) {
			t.Errorf("exported metrics (%d exports) do not mention %q", len(metrics), want)
		}
	}
}

// TestPProfOnlyWhenAsked: /debug/pprof is served only with BCCSTOP_PPROF=true.
func TestPProfOnlyWhenAsked(t *testing.T) {
	srv := testenv.NATS(t)
	_, simURL := testenv.Simulator(t, fakebcc.Options{})
	for _, on := range []bool{false, true} {
		addr := freeAddr(t)
		env := workerEnv(t, srv.ClientURL(), simURL, addr)
		if on {
			env = append(env, "BCCSTOP_PPROF=true")
		}
		w := start(t, env, "worker")
		waitHTTP(t, "http://"+addr+"/readyz", 200, 15*time.Second)
		want := 404
		if on {
			want = 200
		}
		waitHTTP(t, "http://"+addr+"/debug/pprof/", want, 2*time.Second)
		if !strings.Contains(httpGet(t, "http://"+addr+"/metrics"), "bccstop_consumer_pending") {
			t.Error("/metrics lacks bccstop_consumer_pending")
		}
		w.Signal(syscall.SIGTERM, 15*time.Second)
	}
}
