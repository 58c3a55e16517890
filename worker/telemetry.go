package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/bccstop/bccstop/internal/telemetry"
	"github.com/bccstop/bccstop/messages"
)

const instrumentationName = "github.com/bccstop/bccstop/worker"

// Attribute keys, following OpenTelemetry's messaging conventions; "nats" is
// not a registered messaging.system value yet, so it is spelled out.
var (
	attrSystem        = attribute.String("messaging.system", "nats")
	attrProcess       = attribute.String("messaging.operation.type", "process")
	attrProcessName   = attribute.String("messaging.operation.name", "process")
	keyOperationType  = attribute.Key("messaging.operation.type")
	keyOperationName  = attribute.Key("messaging.operation.name")
	keyDestination    = attribute.Key("messaging.destination.name")
	keyConsumerGroup  = attribute.Key("messaging.consumer.group.name")
	keySubscription   = attribute.Key("messaging.destination.subscription.name")
	keyMessageID      = attribute.Key("messaging.message.id")
	keyBodySize       = attribute.Key("messaging.message.body.size")
	keyDeliveryCount  = attribute.Key("messaging.nats.message.delivery_count")
	keyStreamSequence = attribute.Key("messaging.nats.stream.sequence")
	keyOutcome        = attribute.Key("bccstop.outcome")
	keyCommandID      = attribute.Key("bccstop.command.id")
	keyCode           = attribute.Key("bccstop.code")
	keyInstanceID     = attribute.Key("bcc.instance.id")
	keyRequestID      = attribute.Key("bcc.request_id")
	keyReason         = attribute.Key("bccstop.reason")
	keyRequestedBy    = attribute.Key("bccstop.requested_by")
)

// observability holds the worker's tracer, instruments and propagator.
type observability struct {
	w          *Worker
	tracer     trace.Tracer
	commands   metric.Int64Counter
	deliveries metric.Int64Counter
	inflight   metric.Int64UpDownCounter
	retries    metric.Int64Counter
	ledgerHits metric.Int64Counter
	latency    metric.Float64Histogram
	// slowConsumers counts messages-dropped events of the NATS connection;
	// resultConflicts, results stored under a derived id because the
	// results stream held another for the identity (see publish).
	slowConsumers, resultConflicts metric.Int64Counter
	// budgetTrips counts the times this worker paused the fleet for the
	// blast-radius budget; budgetUsed is the budget's use it last saw.
	budgetTrips metric.Int64Counter
	budgetUsed  atomic.Int64
	// credentialsRefused counts answers refusing the BCE credentials.
	credentialsRefused metric.Int64Counter

	// Attribute sets built once, not on every measurement.
	firstDelivery, redelivery metric.MeasurementOption
	byOutcome                 map[messages.Outcome]metric.MeasurementOption
	retryAPI, retryBusy       metric.MeasurementOption
}

func attrSet(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(kv...))
}

func newObservability(w *Worker) (*observability, error) {
	meter := w.opts.MeterProvider.Meter(instrumentationName)
	t := &observability{w: w, tracer: w.opts.TracerProvider.Tracer(instrumentationName),
		firstDelivery: attrSet(attribute.Bool("redelivered", false)), redelivery: attrSet(attribute.Bool("redelivered", true)),
		retryAPI: attrSet(attribute.String("reason", "api")), retryBusy: attrSet(attribute.String("reason", "busy")),
		byOutcome: map[messages.Outcome]metric.MeasurementOption{},
	}
	for _, o := range messages.Outcomes {
		t.byOutcome[o] = attrSet(attribute.String("outcome", string(o)))
	}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	t.commands, err = meter.Int64Counter("bccstop.commands", metric.WithUnit("{command}"),
		metric.WithDescription("Commands finished, by outcome (repeats answered from the ledger are not counted)."))
	check(err)
	t.deliveries, err = meter.Int64Counter("bccstop.deliveries", metric.WithUnit("{delivery}"),
		metric.WithDescription("Command deliveries received; redelivered=true for the second and later."))
	check(err)
	t.inflight, err = meter.Int64UpDownCounter("bccstop.commands.in_flight", metric.WithUnit("{command}"),
		metric.WithDescription("Commands being handled now."))
	check(err)
	t.retries, err = meter.Int64Counter("bccstop.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Deliveries handed back for a later retry, by reason."))
	check(err)
	t.ledgerHits, err = meter.Int64Counter("bccstop.ledger.hits", metric.WithUnit("{delivery}"),
		metric.WithDescription("Deliveries whose outcome the ledger already held (result published again, no API call)."))
	check(err)
	t.slowConsumers, err = meter.Int64Counter("bccstop.nats.slow_consumers", metric.WithUnit("{event}"),
		metric.WithDescription("Times the NATS client dropped messages because a subscription's buffer was full (should stay 0)."))
	check(err)
	t.resultConflicts, err = meter.Int64Counter("bccstop.result_conflicts", metric.WithUnit("{result}"),
		metric.WithDescription("Results the results stream already held another result for (ledger lost); stored under a derived Nats-Msg-Id."))
	check(err)
	t.budgetTrips, err = meter.Int64Counter("bccstop.budget.trips", metric.WithUnit("{trip}"),
		metric.WithDescription("Times this worker paused the fleet because the blast-radius budget (BCCSTOP_MAX_STOPS) was spent."))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.budget.used", metric.WithUnit("{stop}"),
		metric.WithDescription("Stop calls counted in the blast-radius budget's window, as this worker last saw it; 0 without a budget."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(t.budgetUsed.Load())
			return nil
		}))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.budget.limit", metric.WithUnit("{stop}"),
		metric.WithDescription("The blast-radius budget: stop calls allowed in its window (BCCSTOP_MAX_STOPS); 0 without a budget."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v := int64(0)
			if w.opts.Budget != nil {
				v = int64(w.budgetLimit)
			}
			o.Observe(v)
			return nil
		}))
	check(err)
	t.credentialsRefused, err = meter.Int64Counter("bccstop.api.credentials_refused", metric.WithUnit("{answer}"),
		metric.WithDescription("BCC API answers refusing this worker's credentials (InvalidAccessKeyId, SignatureDoesNotMatch, RequestExpired after re-signing), probes included."))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.api.credentials_ok",
		metric.WithDescription("1 while the BCC API accepts this worker's credentials; 0 while it refuses them (the worker takes no command)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v := int64(1)
			if w.creds.refused.Load() != nil {
				v = 0
			}
			o.Observe(v)
			return nil
		}))
	check(err)
	t.latency, err = meter.Float64Histogram("bccstop.command.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a command being stored in JetStream to its result being stored."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.consumer.pending", metric.WithUnit("{command}"),
		metric.WithDescription("Commands stored and not yet delivered to any worker."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(w.pending.Load())
			return nil
		}))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.consumer.paused",
		metric.WithDescription("1 while the fleet is paused (bccstop pause): no worker takes commands; 0 otherwise."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v := int64(0)
			if w.paused.Load() {
				v = 1
			}
			o.Observe(v)
			return nil
		}))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.worker.ready",
		metric.WithDescription("1 while this worker consumes commands over a live NATS connection (/readyz answers 200); 0 otherwise."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v := int64(0)
			if w.Ready() == nil {
				v = 1
			}
			o.Observe(v)
			return nil
		}))
	check(err)
	_, err = meter.Float64ObservableGauge("bccstop.fleet.pause_age", metric.WithUnit("s"),
		metric.WithDescription("Seconds since the fleet's pause in force began; 0 while the fleet runs."),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			v := 0.0
			if since := w.pausedSince.Load(); since != 0 && w.paused.Load() {
				v = max(0, w.opts.Now().Sub(time.Unix(0, since)).Seconds())
			}
			o.Observe(v)
			return nil
		}))
	check(err)
	_, err = meter.Float64ObservableGauge("bccstop.oldest_command_age", metric.WithUnit("s"),
		metric.WithDescription("Seconds since the oldest message in the commands stream was stored (waiting, or in flight); 0 when it is empty."),
		metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			v := 0.0
			if first := w.oldest.Load(); first != 0 {
				v = max(0, w.opts.Now().Sub(time.Unix(0, first)).Seconds())
			}
			o.Observe(v)
			return nil
		}))
	check(err)
	_, err = meter.Int64ObservableGauge("bccstop.consumer.ack_pending", metric.WithUnit("{command}"),
		metric.WithDescription("Commands delivered and not yet acknowledged (in flight or waiting for a retry)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(w.ackPend.Load())
			return nil
		}))
	check(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("worker: instruments: %v", errs)
	}
	// Every series exists from the start, at zero, so a dashboard or an
	// alert on a rate sees the first event as a change, not as a new series.
	ctx := context.Background()
	for _, o := range messages.Outcomes {
		t.commands.Add(ctx, 0, t.byOutcome[o])
	}
	t.deliveries.Add(ctx, 0, t.firstDelivery)
	t.deliveries.Add(ctx, 0, t.redelivery)
	t.retries.Add(ctx, 0, t.retryAPI)
	t.retries.Add(ctx, 0, t.retryBusy)
	t.ledgerHits.Add(ctx, 0)
	t.slowConsumers.Add(ctx, 0)
	t.resultConflicts.Add(ctx, 0)
	t.budgetTrips.Add(ctx, 0)
	t.credentialsRefused.Add(ctx, 0)
	return t, nil
}

// traced starts the consumer span of a delivery, continuing the trace of
// the command's traceparent header when it has one.
func (t *observability) traced(next handlerFunc) handlerFunc {
	return func(ctx context.Context, d *delivery) result {
		if h := d.msg.Header; h != nil {
			ctx = t.w.opts.Propagator.Extract(ctx, telemetry.HeaderCarrier(h))
		}
		// The header is untrusted input: bounded and printable in the span.
		msgID := printable(d.msgID, messages.MaxHeaderIdentity)
		if msgID == "" {
			msgID = d.identity
		}
		ctx, span := t.tracer.Start(ctx, "process "+messages.CommandSubject, trace.WithSpanKind(trace.SpanKindConsumer))
		defer span.End()
		r := next(ctx, d)

		// Every attribute in one call, once the delivery is handled: one
		// allocation and one lock of the span, not one per step.
		attrs := make([]attribute.KeyValue, 0, 17)
		attrs = append(attrs, attrSystem, attrProcess, attrProcessName,
			keyDestination.String(d.msg.Subject),
			keyConsumerGroup.String(t.w.opts.Consumer),
			keySubscription.String(t.w.opts.Consumer),
			keyMessageID.String(msgID),
			keyBodySize.Int(len(d.msg.Data)),
			keyDeliveryCount.Int64(int64(d.delivered)),
			keyStreamSequence.Int64(int64(d.seq)),
			keyCommandID.String(d.identity))
		if d.cmd.InstanceID != "" {
			attrs = append(attrs, keyInstanceID.String(printable(d.cmd.InstanceID, 80)))
		}
		// The audit trail: who asked and why.
		if d.cmd.Reason != "" {
			attrs = append(attrs, keyReason.String(printable(d.cmd.Reason, 4*messages.MaxReason)))
		}
		if d.cmd.RequestedBy != "" {
			attrs = append(attrs, keyRequestedBy.String(printable(d.cmd.RequestedBy, 4*messages.MaxRequestedBy)))
		}
		if r.data != nil {
			attrs = append(attrs, keyOutcome.String(string(r.data.Outcome)))
			if r.data.Code != "" {
				attrs = append(attrs, keyCode.String(r.data.Code))
			}
			if r.data.RequestID != "" {
				attrs = append(attrs, keyRequestID.String(r.data.RequestID))
			}
		}
		span.SetAttributes(attrs...)
		switch {
		case r.data != nil:
			switch {
			case r.ledgerHit:
				span.AddEvent("outcome found in ledger", trace.WithAttributes(keyOutcome.String(string(r.data.Outcome))))
			case r.data.Reconciled:
				span.AddEvent("reconciled", trace.WithAttributes(attribute.String("bcc.instance.status", r.data.InstanceStatus)))
			case r.data.Outcome == messages.Rejected:
				span.AddEvent("rejected", trace.WithAttributes(keyCode.String(r.data.Code), attribute.String("reason", r.data.Message)))
			}
			if r.data.Outcome == messages.Failed || r.data.Outcome == messages.Rejected {
				span.SetStatus(codes.Error, string(r.data.Outcome)+": "+r.data.Code)
			}
		case r.waiting:
			span.AddEvent("waiting for Stopped", trace.WithAttributes(attribute.String("next_look_in", r.delay.String()), attribute.String("detail", errString(r.err))))
		case r.action == actRetry:
			span.AddEvent("retry scheduled", trace.WithAttributes(attribute.String("delay", r.delay.String()), attribute.String("reason", errString(r.err))))
			if !r.busy {
				span.SetStatus(codes.Error, errString(r.err))
			}
		case r.action == actAbandon:
			span.AddEvent("abandoned at shutdown")
			span.SetStatus(codes.Error, errString(r.err))
		}
		return r
	}
}

// observed counts deliveries and outcomes and logs one line per finished
// command (and one per retry).
func (t *observability) observed(next handlerFunc) handlerFunc {
	return func(ctx context.Context, d *delivery) result {
		if d.delivered > 1 {
			t.deliveries.Add(ctx, 1, t.redelivery)
		} else {
			t.deliveries.Add(ctx, 1, t.firstDelivery)
		}
		t.inflight.Add(ctx, 1)
		r := next(ctx, d)
		t.inflight.Add(ctx, -1)
		log := t.w.log
		switch {
		case r.ledgerHit:
			t.ledgerHits.Add(ctx, 1)
			log.InfoContext(ctx, "command already decided; result published again",
				"command_id", d.identity, "instance_id", r.data.InstanceID, "outcome", string(r.data.Outcome), "delivery", d.delivered)
		case r.data != nil:
			now := t.w.opts.Now()
			t.commands.Add(ctx, 1, t.byOutcome[r.data.Outcome])
			if !d.stored.IsZero() {
				t.latency.Record(ctx, now.Sub(d.stored).Seconds(), t.byOutcome[r.data.Outcome])
			}
			// slog.Attr values, not ...any: nothing is boxed on this line,
			// written once per command.
			attrs := make([]slog.Attr, 0, 14)
			attrs = append(attrs, slog.String("command_id", d.identity), slog.String("instance_id", r.data.InstanceID),
				slog.String("outcome", string(r.data.Outcome)), slog.String("code", r.data.Code), slog.String("message", r.data.Message),
				slog.Int("http_status", r.data.HTTPStatus), slog.String("request_id", r.data.RequestID), slog.Int("attempts", r.data.Attempts),
				slog.Bool("reconciled", r.data.Reconciled), slog.Int64("duration_ms", now.Sub(d.received).Milliseconds()))
			if r.data.InstanceStatus != "" {
				attrs = append(attrs, slog.String("instance_status", r.data.InstanceStatus))
			}
			if r.data.Reason != "" {
				attrs = append(attrs, slog.String("reason", r.data.Reason))
			}
			if r.data.RequestedBy != "" {
				attrs = append(attrs, slog.String("requested_by", r.data.RequestedBy))
			}
			log.LogAttrs(ctx, slog.LevelInfo, "command finished", attrs...)
		case r.waiting:
			log.DebugContext(ctx, "waiting for the instance to be Stopped", "command_id", d.identity, "delivery", d.delivered,
				"next_look_in", r.delay.Round(time.Millisecond).String(), "detail", errString(r.err))
		case r.action == actRetry:
			reason := t.retryAPI
			if r.busy {
				reason = t.retryBusy
			}
			t.retries.Add(ctx, 1, reason)
			level := log.WarnContext
			if r.busy {
				level = log.DebugContext
			}
			level(ctx, "command will be retried", "command_id", d.identity, "delivery", d.delivered,
				"retry_in", r.delay.Round(time.Millisecond).String(), "error", errString(r.err))
		case r.action == actAbandon:
			log.WarnContext(ctx, "command handed back unfinished at shutdown", "command_id", d.identity, "error", errString(r.err))
		}
		return r
	}
}

// startProducer starts the span of publishing a result.
func (t *observability) startProducer(ctx context.Context, subject, identity string, size int) (context.Context, trace.Span) {
	return t.tracer.Start(ctx, "send "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attrSystem,
			keyOperationType.String("send"),
			keyOperationName.String("send"),
			keyDestination.String(subject),
			keyMessageID.String(identity),
			keyBodySize.Int(size),
		))
}

// inject writes the span context of ctx into NATS headers.
func (t *observability) inject(ctx context.Context, h nats.Header) {
	t.w.opts.Propagator.Inject(ctx, telemetry.HeaderCarrier(h))
}

func (t *observability) published(_ context.Context, span trace.Span, ack *jetstream.PubAck) {
	span.SetAttributes(keyStreamSequence.Int64(int64(ack.Sequence)), attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
}

func (t *observability) failed(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
