package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/bccstop/bccstop/internal/bcc"
)

// API is what the worker needs of the BCC API.
type API interface {
	StopInstance(ctx context.Context, r bcc.StopRequest) (bcc.Response, error)
	DescribeInstance(ctx context.Context, region, instanceID string) (bcc.Instance, bcc.Response, error)
	HasRegion(region string) bool
}

// Options configure a Worker. Conn and API are required; every other field
// has a default (see withDefaults).
type Options struct {
	Conn *nats.Conn
	API  API

	// WorkerID names this worker in result events (source "bccstop/<id>").
	WorkerID string

	// JetStream names.
	CommandsStream string // default BCCSTOP_COMMANDS
	ResultsStream  string // default BCCSTOP_RESULTS
	Consumer       string // default bccstop-worker
	LedgerBucket   string // default bccstop-ledger

	// Provision creates or updates the streams, consumer and bucket.
	Provision     bool
	Replicas      int           // default 1
	LedgerTTL     time.Duration // default 24h
	ResultsMaxAge time.Duration // default 7 days
	MaxAckPending int           // default 20000

	Concurrency int             // default 64
	MaxDeliver  int             // default 5
	Backoff     []time.Duration // default 1s,5s,15s,30s
	AckWait     time.Duration   // default 30s
	// CallTimeout is the client's per-call limit; it sizes the ledger lease.
	CallTimeout     time.Duration // default 10s
	ShutdownTimeout time.Duration // default 25s
	// Protected instances are never stopped: such commands are rejected.
	Protected []string

	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagator     propagation.TextMapPropagator
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Jitter returns a random duration in [0, d); used to spread retries.
	Jitter func(d time.Duration) time.Duration
}

func (o *Options) withDefaults() error {
	if o.Conn == nil || o.API == nil {
		return fmt.Errorf("worker: Conn and API are required")
	}
	setDefault(&o.WorkerID, "bccstop")
	setDefault(&o.CommandsStream, "BCCSTOP_COMMANDS")
	setDefault(&o.ResultsStream, "BCCSTOP_RESULTS")
	setDefault(&o.Consumer, "bccstop-worker")
	setDefault(&o.LedgerBucket, "bccstop-ledger")
	setDefault(&o.Replicas, 1)
	setDefault(&o.LedgerTTL, 24*time.Hour)
	setDefault(&o.ResultsMaxAge, 7*24*time.Hour)
	setDefault(&o.MaxAckPending, 20000)
	setDefault(&o.Concurrency, 64)
	setDefault(&o.MaxDeliver, 5)
	setDefault(&o.AckWait, 30*time.Second)
	setDefault(&o.CallTimeout, 10*time.Second)
	setDefault(&o.ShutdownTimeout, 25*time.Second)
	if len(o.Backoff) == 0 {
		o.Backoff = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.TracerProvider == nil {
		// The SDK, not a no-op: every span gets its own ids, so the
		// traceparent of a result is always a real child span.
		o.TracerProvider = sdktrace.NewTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = metricnoop.NewMeterProvider()
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Jitter == nil {
		o.Jitter = randomJitter
	}
	if o.ResultsMaxAge < o.LedgerTTL {
		return fmt.Errorf("worker: ResultsMaxAge (%s) must be at least LedgerTTL (%s)", o.ResultsMaxAge, o.LedgerTTL)
	}
	return nil
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
