package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// provision creates or updates the commands stream, the results stream, the
// shared durable consumer and the ledger bucket.
func (w *Worker) provision(ctx context.Context) error {
	err := w.ensureStream(ctx, jetstream.StreamConfig{
		Name:        w.opts.CommandsStream,
		Description: "bccstop: stop commands, removed once a worker has handled them",
		// Scheduled commands (bccstop stop --at) wait in the same stream on
		// their own subjects; the consumer takes only bcc.instance.stop.
		Subjects:          []string{messages.CommandSubject, messages.ScheduleSubjects},
		AllowMsgSchedules: true,
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          w.opts.Replicas,
		// No MaxMsgSize: a payload over the contract's 64 KiB is stored so the
		// worker can answer it with a rejected result (the server's own
		// max_payload, 1 MiB by default, still applies at publish).
		Discard: jetstream.DiscardOld,
	})
	if err != nil {
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
		// the ledger remembers the outcome, so the stream holds one per command.
		Duplicates: w.opts.LedgerTTL,
	})
	if err != nil {
		return err
	}
	consumer := jetstream.ConsumerConfig{
		Durable:       w.opts.Consumer,
		Description:   "bccstop workers (shared: add workers to scale out)",
		FilterSubject: messages.CommandSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.opts.AckWait,
		// Unlimited: the worker itself turns transient failures into a
		// failed result after MaxDeliver deliveries, so a command whose
		// worker died on its last try is still redelivered and answered.
		MaxDeliver:    -1,
		MaxAckPending: w.opts.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      w.opts.Replicas,
	}
	// Updating a consumer replaces its metadata (though not its pause):
	// keep why an operator paused the fleet (see internal/control).
	if existing, err := w.js.Consumer(ctx, w.opts.CommandsStream, w.opts.Consumer); err == nil {
		for k, v := range existing.CachedInfo().Config.Metadata {
			if strings.HasPrefix(k, "bccstop.") {
				if consumer.Metadata == nil {
					consumer.Metadata = map[string]string{}
				}
				consumer.Metadata[k] = v
			}
		}
	}
	if _, err := w.js.CreateOrUpdateConsumer(ctx, w.opts.CommandsStream, consumer); err != nil {
		return fmt.Errorf("create or update consumer %s on %s: %w", w.opts.Consumer, w.opts.CommandsStream, err)
	}
	err = w.ensureStream(ctx, jetstream.StreamConfig{
		Name:        w.opts.ControlStream,
		Description: "bccstop: fleet pauses and resumes (control events)",
		Subjects:    []string{messages.ControlSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
		MaxAge:      w.opts.ResultsMaxAge,
		MaxBytes:    64 << 20,
		MaxMsgSize:  resultsMaxMsgSize,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return err
	}
	bucket := jetstream.KeyValueConfig{
		Bucket:      w.opts.LedgerBucket,
		Description: "bccstop: idempotency ledger, one entry per command identity",
		History:     1,
		TTL:         w.opts.LedgerTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
	}
	if _, err := w.js.CreateKeyValue(ctx, bucket); errors.Is(err, jetstream.ErrBucketExists) {
		_, err = w.js.UpdateKeyValue(ctx, bucket)
		if err != nil {
			return fmt.Errorf("update key-value bucket %s: %w", w.opts.LedgerBucket, err)
		}
	} else if err != nil {
		return fmt.Errorf("create key-value bucket %s: %w", w.opts.LedgerBucket, err)
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

// bind looks up the consumer, the ledger bucket and the results stream,
// which must exist.
func (w *Worker) bind(ctx context.Context) (jetstream.Consumer, jetstream.KeyValue, jetstream.Stream, error) {
	cons, err := w.js.Consumer(ctx, w.opts.CommandsStream, w.opts.Consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("%w (create it, or let the worker do so with BCCSTOP_PROVISION=true)", err)
		}
		return nil, nil, nil, fmt.Errorf("consumer %s on stream %s: %w", w.opts.Consumer, w.opts.CommandsStream, err)
	}
	kv, err := w.js.KeyValue(ctx, w.opts.LedgerBucket)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ledger bucket %s: %w", w.opts.LedgerBucket, err)
	}
	results, err := w.js.Stream(ctx, w.opts.ResultsStream)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("results stream %s: %w", w.opts.ResultsStream, err)
	}
	return cons, kv, results, nil
}
