package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/control"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// Carrying a store of layout 1 (the releases before layout 2, see
// internal/layout) over, done by provision on every start, each step
// idempotent, so a worker killed in the middle leaves a store the next
// start finishes, and several new workers starting at once do no harm:
//
//  1. The legacy commands stream (BCCSTOP_COMMANDS) gives up its subjects
//     (bcc.instance.stop and the schedule subjects) and keeps one no one
//     publishes on; it keeps every message. Until step 2 a publish on
//     bcc.instance.stop fails (no stream answers): the publisher gets an
//     error, nothing is stored or lost. Nothing is purged or deleted.
//  2. The streams, consumers and buckets of layout 2 are created; the
//     ledger bucket's stream is updated in place: no bucket-wide TTL any
//     more, per-message TTL and no roll-ups (JetStream allows each). If an
//     operator paused the fleet of layout 1 (its consumer is paused), the
//     new consumer is created paused until the same time and the pause is
//     recorded with its terms, so the commands that now arrive on layout 2
//     wait with the old ones; bccstop resume ends both.
//  3. Each schedule left in the legacy stream is checked: a one-shot "@at"
//     aimed at bcc.instance.stop with a valid command is copied into the
//     schedules stream (same id, time and command), then deleted from the
//     legacy stream; any other (a repeating or mis-aimed schedule) is
//     refused with a rejected result and deleted. One that fires before it
//     is carried fires in the legacy stream and is drained with the rest;
//     if it then fires again from its copy, the ledger answers the repeat.
//  4. The workers drain the legacy consumer (Run's legacy puller) beside
//     the new one: queued commands keep their order and identity (the
//     fallback identity names the legacy stream), and a command waiting for
//     Stopped goes on waiting, with no second stop.
//  5. The ledger's records of decided outcomes written by layout 1 (which
//     relied on the bucket's TTL) are rewritten with their remaining TTL
//     (sweepLedger), in the background.
//
// Old workers of layout 1 still running during a rolling update keep
// consuming the legacy consumer correctly; one that starts anew with
// provisioning fails loudly (its stream update overlaps the new commands
// stream) and takes nothing. Layout 2's ledger entries are written in a
// form layout 1 cannot decode, so an old worker hands such a command back
// rather than act on it.

// errPermanent marks a start-up failure no retry can fix: Run returns it.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// legacyStore is the retired commands stream of layout 1.
type legacyStore struct {
	stream jetstream.Stream
}

// retireLegacy finds the legacy commands stream and makes it give up its
// subjects (step 1). It refuses a commands stream of layout 1 under the
// name configured for layout 2.
func (w *Worker) retireLegacy(ctx context.Context) (*legacyStore, error) {
	if st, err := w.js.Stream(ctx, w.opts.CommandsStream); err == nil && st.CachedInfo().Config.AllowMsgSchedules {
		return nil, errPermanent{fmt.Errorf("stream %s is a commands stream of layout 1 (message schedules on, so roll-ups forced); set BCCSTOP_LEGACY_COMMANDS_STREAM=%s and BCCSTOP_COMMANDS_STREAM to a new name (for example %s_V2): the worker then carries it over",
			w.opts.CommandsStream, w.opts.CommandsStream, w.opts.CommandsStream)}
	}
	st, err := w.js.Stream(ctx, w.opts.LegacyCommandsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look for the commands stream of an earlier release, %s: %w", w.opts.LegacyCommandsStream, err)
	}
	cfg := st.CachedInfo().Config
	if slices.ContainsFunc(cfg.Subjects, func(s string) bool {
		return s == messages.CommandSubject || strings.HasPrefix(s, messages.ScheduleSubjectPrefix)
	}) {
		w.log.Warn("carrying a store of an earlier release over: its commands stream gives its subjects to the new one and is drained; nothing is deleted",
			"legacy_stream", cfg.Name, "commands_stream", w.opts.CommandsStream)
		cfg.Subjects = []string{layout.RetiredSubjectPrefix + cfg.Name}
		cfg.Description = "bccstop layout 1 commands stream, retired by a worker of layout 2: drained by the workers; remove it once empty (bccstop status)"
		if _, err := w.js.UpdateStream(ctx, cfg); err != nil {
			return nil, fmt.Errorf("retire the commands stream of an earlier release, %s: %w", cfg.Name, err)
		}
	}
	return &legacyStore{stream: st}, nil
}

// carryLegacy moves the legacy stream's schedules (step 3).
func (w *Worker) carryLegacy(ctx context.Context, legacy *legacyStore) error {
	info, err := legacy.stream.Info(ctx, jetstream.WithSubjectFilter(messages.ScheduleSubjects))
	if err != nil {
		return fmt.Errorf("read the schedules of %s: %w", w.opts.LegacyCommandsStream, err)
	}
	if len(info.State.Subjects) == 0 {
		return nil
	}
	// Handling a schedule needs the binding (ledger, schedules stream).
	b, err := w.bind(ctx)
	if err != nil {
		return err
	}
	if w.bound() == nil {
		w.binding.Store(&binding{bound: b, ledger: w.newLedger(b)})
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for s := range info.State.Subjects {
		subjects = append(subjects, s)
	}
	slices.Sort(subjects)
	carried := 0
	for _, subject := range subjects {
		raw, err := legacy.stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // fired or cancelled meanwhile
		}
		if err != nil {
			return fmt.Errorf("read schedule %s of %s: %w", subject, w.opts.LegacyCommandsStream, err)
		}
		d := w.legacyScheduleDelivery(raw)
		r := w.scheduleHandler(ctx, d)
		if r.action == actRetry || r.action == actAbandon {
			return fmt.Errorf("carry schedule %s over: %w", subject, r.err)
		}
		if err := legacy.stream.DeleteMsg(ctx, raw.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("remove the carried schedule %s from %s: %w", subject, w.opts.LegacyCommandsStream, err)
		}
		carried++
	}
	w.log.Info("carried the schedules of an earlier release over", "legacy_stream", w.opts.LegacyCommandsStream, "schedules", carried)
	return nil
}

// legacyScheduleDelivery presents a schedule of layout 1 as the schedule
// request it would be in layout 2: JetStream's schedule headers become
// bccstop's, and the batch is the commandId's prefix as layout 1 made it.
func (w *Worker) legacyScheduleDelivery(raw *jetstream.RawStreamMsg) *delivery {
	h := nats.Header{}
	for k, v := range raw.Header {
		h[k] = v
	}
	h.Set(messages.HeaderSchedule, raw.Header.Get(jetstream.ScheduleHeader))
	h.Set(messages.HeaderScheduleTarget, raw.Header.Get(jetstream.ScheduleTargetHeader))
	if h.Get(messages.HeaderScheduleTarget) == "" {
		h.Set(messages.HeaderScheduleTarget, "(none)")
	}
	if cmd, err := messages.DecodeCommand(raw.Data); err == nil && strings.HasSuffix(cmd.CommandID, "."+cmd.InstanceID) {
		h.Set(messages.HeaderBatchID, strings.TrimSuffix(cmd.CommandID, "."+cmd.InstanceID))
	}
	d := &delivery{msg: &nats.Msg{Subject: raw.Subject, Data: raw.Data, Header: h}, stream: w.opts.LegacyCommandsStream,
		seq: raw.Sequence, delivered: 1, stored: raw.Time, received: w.opts.Now()}
	d.identity = messages.FallbackIdentity(d.stream, d.seq, d.stored)
	return d
}

// carryLegacyPause keeps an operator's pause of layout 1 in force on
// layout 2 (step 2, see control.CarryLegacyPause).
func (w *Worker) carryLegacyPause(ctx context.Context, p control.LegacyPause) error {
	span, err := control.CarryLegacyPause(ctx, w.js, w.target(), p, w.opts.Now())
	if err != nil {
		return fmt.Errorf("carry the pause of an earlier release over: %w", err)
	}
	if span != nil {
		w.log.Warn("the fleet was paused by an earlier release: the pause holds on the new layout too; bccstop resume ends it",
			"paused_by", span.By, "reason", span.Reason, "since", span.Since.Format(time.RFC3339))
	}
	return nil
}

// watchLegacyPause carries a pause of the legacy consumer over while the
// legacy store is drained: an operator still using the previous release's
// bccstop pause during a rolling update pauses the whole fleet.
func (w *Worker) watchLegacyPause(ctx context.Context) {
	p, err := control.ReadLegacyPause(ctx, w.js, w.target())
	if err == nil {
		err = w.carryLegacyPause(ctx, p)
	}
	if err != nil && ctx.Err() == nil {
		w.log.Warn("could not check the pause of the earlier release's consumer", "error", err)
	}
}

// migrationLedgerKey marks, in the fleet bucket, that the ledger's records
// of layout 1 have all been given a TTL (step 5).
const migrationLedgerKey = "migration.ledger-ttl"

// sweepLedger rewrites each decided outcome layout 1 recorded in the
// ledger (which relied on the bucket-wide TTL layout 2 removed) with the
// TTL it has left, compare-and-set, so it expires as it would have. It runs
// until the ledger is swept once with no legacy store left, then marks it
// done.
func (w *Worker) sweepLedger(ctx context.Context) {
	b := w.bound()
	if b == nil {
		return
	}
	if _, err := b.fleet.Get(ctx, migrationLedgerKey); err == nil {
		return
	}
	cons, err := w.js.OrderedConsumer(ctx, "KV_"+w.opts.LedgerBucket, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy})
	if err != nil {
		w.log.Warn("could not sweep the ledger of an earlier release", "error", err)
		return
	}
	swept := 0
	for ctx.Err() == nil {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			w.log.Warn("could not sweep the ledger of an earlier release", "error", err)
			return
		}
		n := 0
		var last jetstream.Msg
		for m := range batch.Messages() {
			n++
			last = m
			if w.expireLayout1Entry(ctx, m) {
				swept++
			}
		}
		if n == 0 {
			break
		}
		if meta, err := last.Metadata(); err != nil || meta.NumPending == 0 {
			break
		}
	}
	if ctx.Err() != nil {
		return
	}
	if swept > 0 {
		w.log.Info("gave the outcomes an earlier release recorded in the ledger their TTL", "entries", swept)
	}
	if b.legacy == nil {
		_, _ = b.fleet.Put(ctx, migrationLedgerKey, []byte(time.Now().UTC().Format(time.RFC3339)))
	}
}

// expireLayout1Entry rewrites one decided outcome of layout 1 with the TTL
// it has left; it reports whether it did.
func (w *Worker) expireLayout1Entry(ctx context.Context, m jetstream.Msg) bool {
	data := m.Data()
	if len(data) == 0 || data[0] != '{' {
		return false // layout 2, or a delete marker
	}
	e, err := decodeLedgerEntry(data)
	if err != nil || e.State != stateDone {
		return false // unfinished entries never expire
	}
	meta, err := m.Metadata()
	if err != nil {
		return false
	}
	left := w.opts.LedgerTTL - w.opts.Now().Sub(e.Updated)
	left = max(left, time.Second)
	_, err = publishAndWait(w.js, &nats.Msg{Subject: m.Subject(), Data: e.encode()},
		jetstream.WithExpectLastSequencePerSubject(meta.Sequence.Stream), jetstream.WithMsgTTL(left))
	return err == nil
}
