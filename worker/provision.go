package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// provision brings JetStream to layout 2 (see internal/layout): it carries
// a store of layout 1 over first (migrate), then creates what is missing
// and updates what is configured otherwise: the schedules, commands,
// results and control streams, the two consumers, and the ledger and fleet
// buckets.
func (w *Worker) provision(ctx context.Context) error {
	legacy, err := w.retireLegacy(ctx)
	if err != nil {
		return err
	}
	if err := w.ensureStream(ctx, w.schedulesStreamConfig()); err != nil {
		return err
	}
	if err := w.ensureStream(ctx, w.commandsStreamConfig()); err != nil {
		return err
	}
	err = w.ensureStream(ctx, jetstream.StreamConfig{
		Name:        w.opts.ResultsStream,
		Description: "bccstop: one result event per command",
		Subjects:    []string{messages.ResultSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
		MaxAge:      w.opts.ResultsMaxAge,
		// Bounded: a result event is about a kilobyte, so these are far
		// above what a command can make, and a flood cannot fill the disk
		// (the oldest results go first).
		MaxMsgSize: resultsMaxMsgSize,
		MaxBytes:   w.opts.ResultsMaxBytes,
		Discard:    jetstream.DiscardOld,
		// Repeated results (same Nats-Msg-Id) are dropped for as long as
		// the ledger remembers the outcome, so the stream holds one per
		// command. (The server removes an expired ledger record a moment
		// late; the ledger takes one past its TTL for forgotten.)
		Duplicates: w.opts.LedgerTTL,
		// Results are the record of what was stopped: nobody removes one.
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		return err
	}
	if err := w.ensureStream(ctx, jsstore.BucketStream(jsstore.BucketOptions{Bucket: w.opts.FleetBucket,
		Description: "bccstop: the fleet's records (its pause)", Replicas: w.opts.Replicas, History: 1, MaxValueSize: 64 << 10})); err != nil {
		return err
	}
	// An operator's pause of the fleet of layout 1 holds layout 2 too: the
	// consumer is created paused, then the pause is recorded (migrate.go).
	legacyPause, err := control.ReadLegacyPause(ctx, w.js, w.target())
	if err != nil {
		return err
	}
	workers := w.consumerConfig(w.opts.Consumer, messages.CommandSubject, w.opts.MaxAckPending)
	if _, err := w.js.Consumer(ctx, w.opts.CommandsStream, w.opts.Consumer); errors.Is(err, jetstream.ErrConsumerNotFound) && legacyPause.ConsumerSet {
		workers.PauseUntil = &legacyPause.Until
	}
	if err := w.ensureConsumer(ctx, w.opts.CommandsStream, workers); err != nil {
		return err
	}
	if err := w.carryLegacyPause(ctx, legacyPause); err != nil {
		return err
	}
	if err := w.ensureConsumer(ctx, w.opts.CommandsStream, w.consumerConfig(w.opts.SchedulerConsumer, messages.ScheduleSubjects, 1000)); err != nil {
		return err
	}
	// Kept as long as results, and de-duplicated as long: a change
	// announced again by a worker that restarted is stored once.
	controlDuplicates := min(w.opts.ResultsMaxAge, 24*time.Hour)
	err = w.ensureStream(ctx, jetstream.StreamConfig{
		Name:        w.opts.ControlStream,
		Description: "bccstop: fleet pauses and resumes, budget trips, holds (control events)",
		Subjects:    []string{messages.ControlSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
		MaxAge:      w.opts.ResultsMaxAge,
		MaxBytes:    64 << 20,
		MaxMsgSize:  resultsMaxMsgSize,
		Discard:     jetstream.DiscardOld,
		Duplicates:  controlDuplicates,
	})
	if err != nil {
		return err
	}
	if err := w.ensureStream(ctx, w.ledgerStreamConfig()); err != nil {
		return err
	}
	// Holds are written by operators; a worker creates the bucket when it
	// is missing and never changes it (it may not: section 7).
	if _, err := w.js.CreateStream(ctx, guard.HoldsStream(w.opts.Replicas)); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create the holds bucket %s: %w", w.opts.HoldsBucket, err)
	}
	// The registry of live workers, for the fleet-wide API rate.
	if err := w.ensureStream(ctx, guard.RegistryStream(w.opts.Replicas)); err != nil {
		return err
	}
	// The counters of the blast-radius budget, kept a little over twice
	// its window.
	if w.opts.Budget != nil {
		_, window, _ := guard.ParseBudget(w.opts.BudgetSpec) // checked by New
		if err := w.ensureStream(ctx, guard.BudgetStream(w.opts.Replicas, window)); err != nil {
			return err
		}
	}
	if legacy != nil {
		return w.carryLegacy(ctx, legacy)
	}
	return nil
}

// commandsStreamConfig is the commands stream of layout 2: commands and
// schedule requests, kept until a worker has handled them, and nothing
// anyone can remove, replace or expire. It refuses roll-ups, purges,
// message deletes, and any message with a TTL, a schedule or a counter
// header (the server answers the publisher with an error); fired schedules
// are taken from the schedules stream onto bcc.instance.stop.
func (w *Worker) commandsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        w.opts.CommandsStream,
		Description: "bccstop layout 2: stop commands and schedule requests, removed once a worker has handled them",
		Subjects:    layout.CommandSubjects,
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
		// Full: new commands are refused, loudly, and none stored is dropped.
		Discard:  jetstream.DiscardNew,
		MaxBytes: w.opts.CommandsMaxBytes,
		MaxMsgs:  w.opts.CommandsMaxMsgs,
		// Twice the contract's 64 KiB: a payload somewhat over it is stored
		// so that the worker answers it with a rejected result; beyond
		// this the publisher's own publish fails.
		MaxMsgSize: 2 * messages.MaxCommandBytes,
		DenyDelete: true,
		DenyPurge:  true,
		// A command published again with the same Nats-Msg-Id within this
		// window is dropped (the server gives a stream with sources none
		// unless it is set).
		Duplicates: 2 * time.Minute,
		Sources: []*jetstream.StreamSource{{
			Name:              w.opts.SchedulesStream,
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: layout.FiredSubject, Destination: messages.CommandSubject}},
		}},
	}
}

// schedulesStreamConfig is where accepted schedules wait for their time.
// JetStream message scheduling needs a stream that allows roll-ups and
// drops its oldest messages when full (the server forces both), so only
// workers write here, after checking each request (see schedule.go), and
// they refuse a request rather than store more than maxSchedules;
// operators may delete a schedule (cancel). Each fired command is kept
// scheduleFiredTTL, long enough for the commands stream to take it over.
func (w *Worker) schedulesStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              w.opts.SchedulesStream,
		Description:       "bccstop: accepted schedules (bccstop stop --at), written by workers only",
		Subjects:          []string{layout.ScheduleSubjects, layout.FiredSubject},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          w.opts.Replicas,
		AllowMsgSchedules: true,
		AllowMsgTTL:       true,
		AllowRollup:       true,
		MaxMsgSize:        2 * messages.MaxCommandBytes,
		Discard:           jetstream.DiscardOld,
		Duplicates:        2 * time.Minute,
	}
}

// scheduleFiredTTL is how long a fired schedule stays in the schedules
// stream after it fired; maxSchedules bounds the schedules waiting there.
const (
	scheduleFiredTTL = 7 * 24 * time.Hour
	maxSchedules     = 100_000
)

// ledgerStreamConfig is the ledger bucket: no bucket-wide TTL (entries of
// unfinished commands never expire), per-message TTL for the records of
// decided outcomes, no roll-ups.
func (w *Worker) ledgerStreamConfig() jetstream.StreamConfig {
	return jsstore.BucketStream(jsstore.BucketOptions{Bucket: w.opts.LedgerBucket,
		Description: "bccstop: idempotency ledger, one entry per command identity", Replicas: w.opts.Replicas, History: 1, PerKeyTTL: true})
}

// consumerConfig is one of the workers' shared durable consumers.
func (w *Worker) consumerConfig(name, filter string, maxAckPending int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "bccstop workers (shared: add workers to scale out)",
		FilterSubject: filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.opts.AckWait,
		// Unlimited: the worker itself turns transient failures into a
		// failed result after MaxDeliver deliveries, so a command whose
		// worker died on its last try is still redelivered and answered.
		MaxDeliver:    -1,
		MaxAckPending: maxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      w.opts.Replicas,
	}
}

// ensureConsumer creates or updates a durable consumer, keeping the
// metadata others put on it (a consumer update replaces it).
func (w *Worker) ensureConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) error {
	if existing, err := w.js.Consumer(ctx, stream, cfg.Durable); err == nil {
		for k, v := range existing.CachedInfo().Config.Metadata {
			if strings.HasPrefix(k, "bccstop.") {
				if cfg.Metadata == nil {
					cfg.Metadata = map[string]string{}
				}
				cfg.Metadata[k] = v
			}
		}
	}
	if _, err := w.js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
		return fmt.Errorf("create or update consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return nil
}

// ensureStream creates the stream, or updates it when it exists with another
// configuration. The server answers a create of a stream that exists as
// configured with the stream itself and changes nothing, so a fleet starting
// or restarting together does not rewrite its streams: only a changed
// configuration is written, and only until one worker has written it.
// (Each update rewrites the stream's stored metadata, and nats-server
// v2.15.2 races a stream update against a consumer being created on that
// stream; see TestFleetStartingTogetherLeavesUnchangedStreamsAlone.)
func (w *Worker) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	_, err := w.js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		if _, err = w.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("update stream %s: %w", cfg.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return nil
}

// resultsMaxMsgSize bounds one stored result: the largest one bccstop makes
// (echoing a 512-character reason and two 128-character identities) is a
// few kilobytes.
const resultsMaxMsgSize = 64 << 10

// bind looks up the consumers, the ledger bucket, the results stream and the
// legacy consumer (nil when there is none), which must exist.
func (w *Worker) bind(ctx context.Context) (*bound, error) {
	cons, err := w.js.Consumer(ctx, w.opts.CommandsStream, w.opts.Consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("%w (create it, or let the worker do so with BCCSTOP_PROVISION=true)", err)
		}
		return nil, fmt.Errorf("consumer %s on stream %s: %w", w.opts.Consumer, w.opts.CommandsStream, err)
	}
	b := &bound{commands: cons}
	if b.scheduler, err = w.js.Consumer(ctx, w.opts.CommandsStream, w.opts.SchedulerConsumer); err != nil {
		return nil, fmt.Errorf("consumer %s on stream %s: %w", w.opts.SchedulerConsumer, w.opts.CommandsStream, err)
	}
	if b.kv, err = w.js.KeyValue(ctx, w.opts.LedgerBucket); err != nil {
		return nil, fmt.Errorf("ledger bucket %s: %w", w.opts.LedgerBucket, err)
	}
	if b.fleet, err = w.js.KeyValue(ctx, w.opts.FleetBucket); err != nil {
		return nil, fmt.Errorf("fleet bucket %s: %w", w.opts.FleetBucket, err)
	}
	if b.results, err = w.js.Stream(ctx, w.opts.ResultsStream); err != nil {
		return nil, fmt.Errorf("results stream %s: %w", w.opts.ResultsStream, err)
	}
	if b.schedules, err = w.js.Stream(ctx, w.opts.SchedulesStream); err != nil {
		return nil, fmt.Errorf("schedules stream %s: %w", w.opts.SchedulesStream, err)
	}
	switch legacy, err := w.js.Consumer(ctx, w.opts.LegacyCommandsStream, w.opts.Consumer); {
	case err == nil:
		b.legacy = legacy
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
	default:
		return nil, fmt.Errorf("consumer %s on the retired stream %s: %w", w.opts.Consumer, w.opts.LegacyCommandsStream, err)
	}
	return b, nil
}

// bound is what bind found.
type bound struct {
	commands, scheduler, legacy jetstream.Consumer
	kv, fleet                   jetstream.KeyValue
	results, schedules          jetstream.Stream
}
