package main

import (
	"context"
	"fmt"
	"io"

	"github.com/bccstop/bccstop/internal/config"
)

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop worker", "", stdout, stderr)
	fs.help = func(stdout io.Writer) {
		fmt.Fprint(stdout, `Usage: bccstop worker

Consumes stop commands from NATS JetStream (subject bcc.instance.stop), calls
the BCC API, and publishes one result event per command on
bcc.instance.stop.result.<outcome>. SIGTERM or SIGINT stop fetching, let
in-flight commands finish within BCCSTOP_SHUTDOWN_TIMEOUT, and exit 0.

It is configured by environment variables:

`)
		config.PrintVariables(stdout, config.WorkerVariables())
		fmt.Fprint(stdout, `
  OTEL_*   standard OpenTelemetry variables: OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER
           (otlp, console, none), OTEL_METRICS_EXPORTER (otlp: push metrics
           over OTLP too, beside /metrics; none), OTEL_EXPORTER_OTLP_ENDPOINT,
           OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_METRIC_EXPORT_INTERVAL, …
           Nothing is exported unless they ask for it.
  GOGC, GOMEMLIMIT
           the Go garbage collector; the worker uses GOGC=400 and
           GOMEMLIMIT=40MiB when they are not set.

A missing or malformed setting stops start-up with one line naming it (exit 2);
any other start-up failure, such as BCCSTOP_HTTP_ADDR's port in use, exits 1.
`)
	}
	positional, err := fs.parse(args)
	if err != nil {
		return flagExit(err)
	}
	if len(positional) > 0 {
		fs.usageError("unexpected argument %q (the worker is configured by environment variables)", positional[0])
		return exitUsage
	}
	cfg, err := config.LoadWorker()
	if err != nil {
		fmt.Fprintf(stderr, "bccstop worker: %v\n", err)
		return exitUsage
	}
	tuneWorkerGC()
	log := newLogger(cfg, stderr)
	a, err := startApp(ctx, cfg, log)
	if err != nil {
		fmt.Fprintf(stderr, "bccstop worker: %v\n", err)
		return startExit(err)
	}
	if err := a.run(ctx); err != nil {
		log.Error("worker stopped", "error", err)
		return exitFailure
	}
	log.Info("worker stopped")
	return exitOK
}
