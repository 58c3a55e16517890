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
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/layout"
)

// API is what the worker needs of the BCC API.
type API interface {
	StopInstance(ctx context.Context, r bcc.StopRequest) (bcc.Response, error)
	DescribeInstance(ctx context.Context, region, instanceID string) (bcc.Instance, bcc.Response, error)
	// DescribeInstances describes several instances in one call (the
	// batch describe); an instance the answer does not list is unknown.
	DescribeInstances(ctx context.Context, region string, ids []string) (map[string]bcc.Instance, bcc.Response, error)
	// CheckCredentials makes a harmless signed call: an error that
	// bcc.IsCredentialError reports means the credentials are refused.
	CheckCredentials(ctx context.Context) error
	HasRegion(region string) bool
}

// Options configure a Worker. Conn and API are required; every other field
// has a default (see withDefaults).
type Options struct {
	Conn *nats.Conn
	API  API

	// WorkerID names this worker in result events (source "bccstop/<id>").
	WorkerID string

	// JetStream names (see internal/layout for what each holds).
	CommandsStream string // default BCCSTOP_COMMANDS_V2
	// LegacyCommandsStream is the commands stream of layout 1, retired
	// and drained when found (see migrate.go); default BCCSTOP_COMMANDS.
	LegacyCommandsStream string
	ResultsStream        string // default BCCSTOP_RESULTS
	ControlStream        string // default BCCSTOP_CONTROL
	SchedulesStream      string // default BCCSTOP_SCHEDULES
	Consumer             string // default bccstop-worker
	SchedulerConsumer    string // default bccstop-scheduler
	LedgerBucket         string // default bccstop-ledger
	FleetBucket          string // default bccstop-fleet
	HoldsBucket          string // default bccstop-holds

	// Provision creates or updates the streams, consumers and buckets, and
	// carries a store of layout 1 over (see migrate.go).
	Provision bool
	Replicas  int // default 1
	// LedgerTTL is how long the outcome of a concluded command is
	// remembered (and its repeats answered with it); an entry of a command
	// not yet concluded never expires. Default 24h.
	LedgerTTL     time.Duration
	ResultsMaxAge time.Duration // default 7 days
	// CommandsMaxBytes and CommandsMaxMsgs bound the commands stream: once
	// full, new commands are refused (the publisher gets an error) and
	// nothing stored is dropped. Defaults 1 GiB and 1,000,000.
	CommandsMaxBytes int64
	CommandsMaxMsgs  int64
	// ResultsMaxBytes bounds the results stream; the oldest results go
	// first when it is full. Default 1 GiB.
	ResultsMaxBytes int64
	// MaxAckPending bounds the commands delivered and not yet acknowledged
	// (in flight, waiting for a retry, waiting for Stopped) across the
	// fleet. A command waiting for Stopped holds one the whole time, so it
	// is at least CommandsMaxMsgs (the default): however many wait, a new
	// command is always delivered.
	MaxAckPending int

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

	// AccessKeyID names the credentials in logs (never the secret).
	AccessKeyID string
	// ReloadCredentials, when set, reads the BCE credentials again and
	// gives them to the API client; called while the API refuses them.
	ReloadCredentials func() error

	// Rate paces the fleet's API calls (the API client waits for it);
	// the worker runs it. Nil: no fleet-wide rate.
	Rate *guard.Rate
	// Budget is the blast-radius budget, charged once per command before
	// its first stop call; BudgetSpec its "N/DURATION" as configured, for
	// events and status. Nil: no budget.
	Budget     *guard.Budget
	BudgetSpec string

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
	setDefault(&o.CommandsStream, layout.CommandsStream)
	setDefault(&o.LegacyCommandsStream, layout.LegacyCommandsStream)
	setDefault(&o.ResultsStream, layout.ResultsStream)
	setDefault(&o.ControlStream, layout.ControlStream)
	setDefault(&o.SchedulesStream, layout.SchedulesStream)
	setDefault(&o.Consumer, layout.Consumer)
	setDefault(&o.SchedulerConsumer, layout.SchedulerConsumer)
	setDefault(&o.LedgerBucket, layout.LedgerBucket)
	setDefault(&o.FleetBucket, layout.FleetBucket)
	setDefault(&o.HoldsBucket, layout.HoldsBucket)
	setDefault(&o.CommandsMaxBytes, 1<<30)
	setDefault(&o.CommandsMaxMsgs, 1_000_000)
	setDefault(&o.Replicas, 1)
	setDefault(&o.LedgerTTL, 24*time.Hour)
	setDefault(&o.ResultsMaxAge, 7*24*time.Hour)
	setDefault(&o.ResultsMaxBytes, 1<<30)
	setDefault(&o.MaxAckPending, int(o.CommandsMaxMsgs))
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
	case o.MaxDeliver > MaxMaxDeliver:
		return invalidOption("MaxDeliver", "at most %d, got %d", MaxMaxDeliver, o.MaxDeliver)
	case o.MaxAckPending < int(o.CommandsMaxMsgs):
		return invalidOption("MaxAckPending", "(%d) must be at least CommandsMaxMsgs (%d): commands waiting for Stopped would keep new ones from being delivered", o.MaxAckPending, o.CommandsMaxMsgs)
	case o.ResultsMaxAge < o.LedgerTTL:
		return invalidOption("ResultsMaxAge", "(%s) must be at least LedgerTTL (%s)", o.ResultsMaxAge, o.LedgerTTL)
	case o.LedgerTTL < max(MinLedgerTTL, 2*o.AckWait):
		return invalidOption("LedgerTTL", "(%s) must be at least %s and twice AckWait (%s): a command whose acknowledgement was lost comes back after AckWait and must find its outcome",
			o.LedgerTTL, MinLedgerTTL, o.AckWait)
	case o.CommandsMaxBytes < 0 || o.CommandsMaxMsgs < 0:
		return invalidOption("CommandsMaxBytes", "and CommandsMaxMsgs must not be negative")
	case o.Budget != nil && o.BudgetSpec == "":
		return invalidOption("BudgetSpec", "is required with a Budget")
	case o.CommandsStream == o.LegacyCommandsStream:
		return invalidOption("CommandsStream", "%s is the name of layout 1's commands stream (LegacyCommandsStream); give the commands stream of layout 2 another name", o.CommandsStream)
	}
	return nil
}

// MaxMaxDeliver bounds MaxDeliver: far above any useful retry budget, and
// low enough that no arithmetic on it overflows.
const MaxMaxDeliver = 1000

// MinLedgerTTL is the shortest LedgerTTL.
const MinLedgerTTL = 10 * time.Second

func setDefault[T comparable](field *T, value T) {
	var zero T
	if *field == zero {
		*field = value
	}
}
