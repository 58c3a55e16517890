package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/internal/natsconn"
	"github.com/bccstop/bccstop/internal/ops"
	"github.com/bccstop/bccstop/internal/telemetry"
	"github.com/bccstop/bccstop/worker"
)

// app is a wired worker process: telemetry, NATS, the API client, the worker
// and its ops server.
type app struct {
	log       *slog.Logger
	providers *telemetry.Providers
	nc        *nats.Conn
	worker    *worker.Worker
	ops       *ops.Server
}

// newLogger builds the logger cfg asks for.
func newLogger(cfg config.Worker, w io.Writer) *slog.Logger {
	level, _ := config.ParseLogLevel(cfg.LogLevel) // validated with the config
	return telemetry.NewLogger(w, cfg.LogFormat, level)
}

// runtimeError is a start-up failure that is not the configuration's fault
// (a port in use, say): exit status 1, not 2.
type runtimeError struct{ err error }

func (e runtimeError) Error() string { return e.err.Error() }
func (e runtimeError) Unwrap() error { return e.err }

// startExit is the exit status for a startApp error.
func startExit(err error) int {
	if errors.As(err, &runtimeError{}) {
		return exitFailure
	}
	return exitUsage
}

// startApp wires everything and starts the ops server; the worker starts
// consuming when run is called. Errors are the configuration's (exit 2)
// unless they are a runtimeError.
func startApp(ctx context.Context, cfg config.Worker, log *slog.Logger) (*app, error) {
	providers, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "bccstop", Version: versionString()})
	if err != nil {
		return nil, err
	}
	a := &app{log: log, providers: providers}
	a.nc, err = natsconn.Connect(cfg.NATS, natsconn.Options{Name: "bccstop worker " + cfg.WorkerID, Logger: log, RetryOnFailedConnect: true,
		InboxPrefix: layout.WorkerInboxPrefix})
	if err != nil {
		a.close()
		return nil, err
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		a.close()
		return nil, err
	}
	// The fleet's guardrails, kept in NATS (internal/guard).
	var fleetRate *guard.Rate
	if cfg.RateLimit > 0 {
		if fleetRate, err = guard.NewRate(guard.RateOptions{JetStream: js, WorkerID: cfg.WorkerID, Limit: cfg.RateLimit}); err != nil {
			a.close()
			return nil, fmt.Errorf("BCCSTOP_RATE_LIMIT: %w", err)
		}
	}
	var budget *guard.Budget
	if cfg.MaxStops != "" {
		n, window, _ := guard.ParseBudget(cfg.MaxStops) // checked with the configuration
		if budget, err = guard.NewBudget(guard.BudgetOptions{JetStream: js, Limit: n, Window: window}); err != nil {
			a.close()
			return nil, fmt.Errorf("BCCSTOP_MAX_STOPS: %w", err)
		}
	}
	api, err := newAPIClient(cfg, providers, fleetRate)
	if err != nil {
		a.close()
		return nil, err
	}
	a.worker, err = worker.New(worker.Options{
		Conn:                 a.nc,
		API:                  api,
		WorkerID:             cfg.WorkerID,
		CommandsStream:       cfg.CommandsStream,
		LegacyCommandsStream: cfg.LegacyStream,
		CommandsMaxBytes:     cfg.CommandsMaxBytes,
		CommandsMaxMsgs:      cfg.CommandsMaxMsgs,
		ResultsStream:        cfg.ResultsStream,
		Consumer:             cfg.Consumer,
		LedgerBucket:         cfg.LedgerBucket,
		Provision:            cfg.Provision,
		Replicas:             cfg.Replicas,
		LedgerTTL:            cfg.LedgerTTL,
		ResultsMaxAge:        cfg.ResultsMaxAge,
		ResultsMaxBytes:      cfg.ResultsMaxBytes,
		MaxAckPending:        cfg.MaxAckPending,
		Concurrency:          cfg.Concurrency,
		MaxDeliver:           cfg.MaxDeliver,
		Backoff:              cfg.Backoff,
		AckWait:              cfg.AckWait,
		CallTimeout:          cfg.CallTimeout,
		ShutdownTimeout:      cfg.ShutdownTimeout,
		MaxCommandAge:        cfg.MaxCommandAge,
		StopWaitTimeout:      cfg.StopWaitTimeout,
		StopWaitIntervals:    cfg.StopWaitIntervals,
		Protected:            cfg.Protected,
		AccessKeyID:          cfg.AccessKeyID,
		ReloadCredentials:    reloadCredentials(api),
		Rate:                 fleetRate,
		Budget:               budget,
		BudgetSpec:           cfg.MaxStops,
		Logger:               log,
		TracerProvider:       providers.Tracer,
		MeterProvider:        providers.Meter,
		Propagator:           providers.Propagator,
	})
	if err != nil {
		a.close()
		return nil, err
	}
	a.ops, err = ops.Start(ops.Options{Addr: cfg.HTTPAddr, Ready: a.worker.Ready, Metrics: providers.Metrics, PProf: cfg.PProf})
	if err != nil {
		a.close()
		return nil, runtimeError{fmt.Errorf("BCCSTOP_HTTP_ADDR: %w", err)}
	}
	log.Info("bccstop worker starting", "version", versionString(), "worker_id", cfg.WorkerID, "nats", natsconn.RedactURLs(cfg.URL), "nats_connected", a.nc.IsConnected(),
		"access_key_id", cfg.AccessKeyID, "session_token", cfg.SessionToken != "", "endpoint", cfg.Endpoint, "regions", api.Regions(), "http_addr", a.ops.Addr(), "concurrency", cfg.Concurrency,
		"max_deliver", cfg.MaxDeliver, "backoff", cfg.Backoff.String(), "ack_wait", cfg.AckWait.String(),
		"rate_limit", cfg.RateLimit, "max_stops", cfg.MaxStops, "trace_exporter", providers.Exporter, "metrics_exporter", providers.MetricsExporter, "protected_instances", []string(cfg.Protected))
	return a, nil
}

// reloadCredentials reads the BCE credentials again (the environment, and
// the _FILE variables' files, which a Secret update rewrites) and gives
// them to the API client.
func reloadCredentials(api *bcc.Client) func() error {
	return func() error {
		creds, err := config.LoadCredentials()
		if err != nil {
			return err
		}
		return api.SetCredentials(bce.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey.Reveal(),
			SessionToken: creds.SessionToken.Reveal()})
	}
}

// newAPIClient builds the BCC client: requests wait for the fleet's rate
// (fleetRate; nil for none), which throttling answers slow down, then carry
// their HTTP client span and duration metric, over pooled connections.
func newAPIClient(cfg config.Worker, p *telemetry.Providers, fleetRate *guard.Rate) (*bcc.Client, error) {
	var limiter bcc.Limiter
	var throttled func(time.Duration)
	if fleetRate != nil {
		limiter, throttled = fleetRate, fleetRate.Throttled
	}
	wait, err := p.Meter.Meter("github.com/bccstop/bccstop/internal/bcc").Float64Histogram("bccstop.ratelimit.wait.duration",
		metric.WithUnit("s"), metric.WithDescription("Time API requests waited for the fleet-wide rate limit (BCCSTOP_RATE_LIMIT)."))
	if err != nil {
		return nil, err
	}
	client, err := bcc.New(bcc.Options{
		Endpoint: cfg.Endpoint,
		Regions:  cfg.Endpoints,
		Credentials: bce.Credentials{
			AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey.Reveal(), SessionToken: cfg.SessionToken.Reveal(),
		},
		Timeout:        cfg.CallTimeout,
		Limiter:        limiter,
		Throttled:      throttled,
		Waited:         func(d time.Duration) { wait.Record(context.Background(), d.Seconds()) },
		TracerProvider: p.Tracer,
		MeterProvider:  p.Meter,
	})
	if err != nil {
		return nil, fmt.Errorf("BCC_ENDPOINT/BCC_ENDPOINTS: %w", err)
	}
	return client, nil
}

// run consumes until ctx ends, then drains and shuts everything down.
func (a *app) run(ctx context.Context) error {
	err := a.worker.Run(ctx)
	a.close()
	return err
}

// close stops what was started, in reverse order; safe on a partial app.
func (a *app) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a.ops != nil {
		_ = a.ops.Stop(ctx)
	}
	if a.nc != nil {
		closed := make(chan struct{})
		a.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		}
		select {
		case <-closed:
		case <-ctx.Done():
			a.nc.Close()
		}
	}
	if a.providers != nil {
		if err := a.providers.Shutdown(ctx); err != nil {
			a.log.Warn("flushing telemetry", "error", err)
		}
	}
}
