package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/messages"
)

// provision creates or updates the commands stream, the results stream, the
// shared durable consumer and the ledger bucket.
func (w *Worker) provision(ctx context.Context) error {
	_, err := w.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        w.opts.CommandsStream,
		Description: "bccstop: stop commands, removed once a worker has handled them",
		Subjects:    []string{messages.CommandSubject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
		// No MaxMsgSize: a payload over the contract's 64 KiB is stored so the
		// worker can answer it with a rejected result (the server's own
		// max_payload, 1 MiB by default, still applies at publish).
		Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("create or update stream %s: %w", w.opts.CommandsStream, err)
	}
	_, err = w.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        w.opts.ResultsStream,
		Description: "bccstop: one result event per command",
		Subjects:    []string{messages.ResultSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
		MaxAge:      w.opts.ResultsMaxAge,
		// Repeated results (same Nats-Msg-Id) are dropped for as long as
		// the ledger remembers the outcome, so the stream holds one per command.
		Duplicates: w.opts.LedgerTTL,
	})
	if err != nil {
		return fmt.Errorf("create or update stream %s: %w", w.opts.ResultsStream, err)
	}
	_, err = w.js.CreateOrUpdateConsumer(ctx, w.opts.CommandsStream, jetstream.ConsumerConfig{
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
	})
	if err != nil {
		return fmt.Errorf("create or update consumer %s on %s: %w", w.opts.Consumer, w.opts.CommandsStream, err)
	}
	_, err = w.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      w.opts.LedgerBucket,
		Description: "bccstop: idempotency ledger, one entry per command identity",
		History:     1,
		TTL:         w.opts.LedgerTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    w.opts.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create or update key-value bucket %s: %w", w.opts.LedgerBucket, err)
	}
	return nil
}

// bind looks up the consumer and the ledger bucket, which must exist.
func (w *Worker) bind(ctx context.Context) (jetstream.Consumer, jetstream.KeyValue, error) {
	cons, err := w.js.Consumer(ctx, w.opts.CommandsStream, w.opts.Consumer)
	if err != nil {
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			err = fmt.Errorf("%w (create it, or let the worker do so with BCCSTOP_PROVISION=true)", err)
		}
		return nil, nil, fmt.Errorf("consumer %s on stream %s: %w", w.opts.Consumer, w.opts.CommandsStream, err)
	}
	kv, err := w.js.KeyValue(ctx, w.opts.LedgerBucket)
	if err != nil {
		return nil, nil, fmt.Errorf("ledger bucket %s: %w", w.opts.LedgerBucket, err)
	}
	return cons, kv, nil
}
