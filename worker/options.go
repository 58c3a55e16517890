package worker

import (
	"context"
	"errors"
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
	ControlStream  string // default BCCSTOP_CONTROL
	Consumer       string // default bccstop-worker
	LedgerBucket   string // default bccstop-ledger

	// Provision creates or updates the streams, consumer and bucket.
	Provision     bool
	Replicas      int           // default 1
	LedgerTTL     time.Duration // default 24h
	ResultsMaxAge time.Duration // default 7 days
	// ResultsMaxBytes bounds the results stream; the oldest results go
	// first when it is full. Default 1 GiB.
	ResultsMaxBytes int64
	MaxAckPending   int // default 20000

	Concurrency int // default 64
	// Prefetch is how many commands may wait, pulled, for a free handler;
	// default Concurrency/2.
	Prefetch   int
	MaxDeliver int             // default 5
	Backoff    []time.Duration // default 1s,5s,15s,30s
	AckWait    time.Duration   // default 30s
	// CallTimeout is the client's per-call limit; it sizes the ledger lease.
	CallTimeout     time.Duration // default 10s
	ShutdownTimeout time.Duration // default 25s
	// MaxCommandAge, when positive, rejects (Expired) a command stored
	// longer than this before a worker took it.
	MaxCommandAge time.Duration
	// StopWaitTimeout is how long a command with waitUntilStopped waits
	// for Stopped before it ends failed StopTimedOut. Default 10m.
	StopWaitTimeout time.Duration
	// StopWaitIntervals space the looks (describe calls) while waiting;
	// the last one repeats. Default 2s,5s,10s,15s.
	StopWaitIntervals []time.Duration
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

// ErrInvalidOption is wrapped by the error New returns for invalid Options.
var ErrInvalidOption = errors.New("worker: invalid option")

func invalidOption(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, name, fmt.Sprintf(format, args...))
}

func (o *Options) withDefaults() error {
	if o.Conn == nil {
		return invalidOption("Conn", "is required")
	}
	if o.API == nil {
		return invalidOption("API", "is required")
	}
	for _, check := range []struct {
		name  string
		value int
	}{{"Concurrency", o.Concurrency}, {"Prefetch", o.Prefetch}, {"MaxDeliver", o.MaxDeliver}, {"Replicas", o.Replicas},
		{"MaxAckPending", o.MaxAckPending}} {
		if check.value < 0 {
			return invalidOption(check.name, "must not be negative, got %d", check.value)
		}
	}
	for _, check := range []struct {
		name  string
		value time.Duration
	}{{"LedgerTTL", o.LedgerTTL}, {"ResultsMaxAge", o.ResultsMaxAge}, {"AckWait", o.AckWait}, {"CallTimeout", o.CallTimeout},
		{"ShutdownTimeout", o.ShutdownTimeout}, {"MaxCommandAge", o.MaxCommandAge}, {"StopWaitTimeout", o.StopWaitTimeout}} {
		if check.value < 0 {
			return invalidOption(check.name, "must not be negative, got %s", check.value)
		}
	}
	if o.ResultsMaxBytes < 0 {
		return invalidOption("ResultsMaxBytes", "must not be negative, got %d", o.ResultsMaxBytes)
	}
	for _, b := range o.Backoff {
		if b <= 0 {
			return invalidOption("Backoff", "delays must be positive, got %s", b)
		}
	}
	for _, b := range o.StopWaitIntervals {
		if b <= 0 {
			return invalidOption("StopWaitIntervals", "must be positive, got %s", b)
		}
	}
	setDefault(&o.WorkerID, "bccstop")
	setDefault(&o.CommandsStream, "BCCSTOP_COMMANDS")
	setDefault(&o.ResultsStream, "BCCSTOP_RESULTS")
	setDefault(&o.ControlStream, "BCCSTOP_CONTROL")
	setDefault(&o.Consumer, "bccstop-worker")
	setDefault(&o.LedgerBucket, "bccstop-ledger")
	setDefault(&o.Replicas, 1)
	setDefault(&o.LedgerTTL, 24*time.Hour)
	setDefault(&o.ResultsMaxAge, 7*24*time.Hour)
	setDefault(&o.ResultsMaxBytes, 1<<30)
	setDefault(&o.MaxAckPending, 20000)
	setDefault(&o.Concurrency, 64)
	setDefault(&o.Prefetch, o.Concurrency/2)
	setDefault(&o.MaxDeliver, 5)
	setDefault(&o.AckWait, 30*time.Second)
	setDefault(&o.CallTimeout, 10*time.Second)
	setDefault(&o.ShutdownTimeout, 25*time.Second)
	setDefault(&o.StopWaitTimeout, 10*time.Minute)
	if len(o.StopWaitIntervals) == 0 {
		o.StopWaitIntervals = []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second}
	}
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
	switch {
	case o.Concurrency > 10000:
		return invalidOption("Concurrency", "at most 10000, got %d", o.Concurrency)
	case o.MaxAckPending < o.Concurrency:
		return invalidOption("MaxAckPending", "must be at least Concurrency (%d), got %d", o.Concurrency, o.MaxAckPending)
	case o.ResultsMaxAge < o.LedgerTTL:
		return invalidOption("ResultsMaxAge", "(%s) must be at least LedgerTTL (%s)", o.ResultsMaxAge, o.LedgerTTL)
	}
	if horizon := o.RetryHorizon(); o.LedgerTTL < horizon {
		return invalidOption("LedgerTTL", "(%s) is shorter than the longest a command can be retried (%s: %d deliveries, each up to the ack wait and a call, plus the backoff); an entry could expire while its command is still being retried",
			o.LedgerTTL, horizon, o.MaxDeliver)
	}
	return nil
}

// RetryHorizon is the longest a command's ledger entry must live (see the
// function RetryHorizon) for these options.
func (o *Options) RetryHorizon() time.Duration {
	return RetryHorizon(o.MaxDeliver, o.AckWait, o.CallTimeout, o.Backoff, o.StopWaitTimeout, o.StopWaitIntervals)
}

// RetryHorizon is the longest a command's ledger entry must live: from its
// first delivery until its last possible one, maxDeliver deliveries, each
// lasting up to the ack wait plus a call and a describe, then waiting the
// longest backoff (with its jitter) before the next; then, for a command
// that waits until Stopped, the wait and one more look. A command whose
// deliveries were interrupted by infrastructure failures (ledger or publish
// errors) may take longer still; those retry for as long as it takes.
func RetryHorizon(maxDeliver int, ackWait, callTimeout time.Duration, backoff []time.Duration, stopWait time.Duration, waitIntervals []time.Duration) time.Duration {
	longest := func(ds []time.Duration) time.Duration {
		m := time.Duration(0)
		for _, d := range ds {
			m = max(m, d)
		}
		return m
	}
	perDelivery := ackWait + 2*callTimeout + longest(backoff)*6/5
	return time.Duration(maxDeliver)*perDelivery + stopWait + longest(waitIntervals)*11/10 + ackWait
}

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
