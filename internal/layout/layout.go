// Package layout names what bccstop keeps in JetStream: its streams,
// consumers, buckets and internal subjects. The workers create them
// (unless told not to), the command line reads and changes them, and the
// NATS authorization (deploy/nats) grants each role exactly these, so the
// names are defined here once.
//
// This is layout 2. Layout 1 (the releases before it) kept commands and
// the schedules of `bccstop stop --at` in one stream, BCCSTOP_COMMANDS,
// which allowed message schedules. JetStream forces roll-ups on such a
// stream and cannot turn schedules off again, so anyone who could publish
// a command could erase every queued command with one header. Layout 2
// keeps commands in BCCSTOP_COMMANDS_V2, which refuses roll-ups, purges,
// deletes and every scheduling or TTL header, and keeps schedules in
// BCCSTOP_SCHEDULES, which only workers write. See worker/migrate.go for
// how a store of layout 1 is carried over.
package layout

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/bccstop/bccstop/messages"
)

// Version is the layout this package describes.
const Version = 2

// Default names.
const (
	// CommandsStream stores commands (bcc.instance.stop) and schedule
	// requests (bcc.instance.stop.schedule.>) until a worker has handled
	// them (work-queue retention).
	CommandsStream = "BCCSTOP_COMMANDS_V2"
	// LegacyCommandsStream is layout 1's commands stream. A worker of
	// layout 2 retires it (it captures no subject any more) and drains the
	// commands left in it.
	LegacyCommandsStream = "BCCSTOP_COMMANDS"
	// ResultsStream stores one result event per command identity.
	ResultsStream = "BCCSTOP_RESULTS"
	// ControlStream stores control events.
	ControlStream = "BCCSTOP_CONTROL"
	// SchedulesStream holds accepted schedules (written by workers only);
	// JetStream fires each onto FiredSubject at its time, and the commands
	// stream sources fired commands from there onto bcc.instance.stop.
	SchedulesStream = "BCCSTOP_SCHEDULES"
	// CountersStream holds the fleet's counters (the blast-radius budget).
	CountersStream = "BCCSTOP_COUNTERS"

	// Consumer is the durable consumer every worker shares, on
	// bcc.instance.stop; the same name on the legacy stream.
	Consumer = "bccstop-worker"
	// SchedulerConsumer takes schedule requests to check and store them.
	SchedulerConsumer = "bccstop-scheduler"

	// LedgerBucket is the idempotency ledger, one entry per command identity.
	LedgerBucket = "bccstop-ledger"
	// FleetBucket holds the fleet's records: the pause (key PauseKey).
	FleetBucket = "bccstop-fleet"
	// HoldsBucket holds the holds on instances (bccstop hold), one key each.
	HoldsBucket = "bccstop-holds"
	// WorkersBucket is the registry of live workers (fleet-wide rate limit).
	WorkersBucket = "bccstop-workers"
)

// Keys of FleetBucket.
const (
	// PauseKey is the record of the current (or last) fleet pause.
	PauseKey = "pause"
	// BudgetKey is the blast-radius budget the workers run with
	// (BCCSTOP_MAX_STOPS), for bccstop status.
	BudgetKey = "budget"
)

// Internal subjects: no one but the workers publishes on them.
const (
	// ScheduleSubjectPrefix prefixes an accepted schedule in SchedulesStream,
	// its schedule id after it.
	ScheduleSubjectPrefix = "bccstop.schedule."
	// ScheduleSubjects matches every accepted schedule.
	ScheduleSubjects = ScheduleSubjectPrefix + ">"
	// FiredSubject is where JetStream delivers a schedule at its time, in
	// SchedulesStream; the commands stream takes it from there onto
	// messages.CommandSubject.
	FiredSubject = "bccstop.fired"
	// CounterSubjects are the counters of CountersStream.
	CounterSubjects = "bccstop.counter.>"
	// RetiredSubjectPrefix prefixes the one subject a retired stream keeps
	// (a stream must capture at least one): no one publishes on it.
	RetiredSubjectPrefix = "bccstop.retired."
)

// WorkerInboxPrefix is the inbox prefix of the workers' connections: the
// replies they get (pulled commands, ledger reads) go to subjects only the
// worker role may subscribe to, so no other client reads them.
const WorkerInboxPrefix = "_BCCSTOP_WORKER_INBOX"

// Names are the names of one deployment: the defaults above unless
// configured otherwise.
type Names struct {
	Commands, LegacyCommands, Results, Control, Schedules, Counters string
	Consumer, SchedulerConsumer                                     string
	Ledger, Fleet, Holds, Workers                                   string
}

// Defaults returns the default names.
func Defaults() Names {
	return Names{
		Commands: CommandsStream, LegacyCommands: LegacyCommandsStream, Results: ResultsStream, Control: ControlStream,
		Schedules: SchedulesStream, Counters: CountersStream,
		Consumer: Consumer, SchedulerConsumer: SchedulerConsumer,
		Ledger: LedgerBucket, Fleet: FleetBucket, Holds: HoldsBucket, Workers: WorkersBucket,
	}
}

// CommandSubjects are the subjects the commands stream captures.
var CommandSubjects = []string{messages.CommandSubject, messages.ScheduleSubjects}

// The ledger (LedgerBucket) keeps one entry per command identity under
// LedgerKey(identity). An entry of this layout is LedgerMagic followed by
// JSON; layout 1 wrote the JSON alone. A reader that meets an entry
// starting with LedgerVersionPrefix and another version must not guess at
// it.
const (
	LedgerMagic         = "bccstop.ledger/2 "
	LedgerVersionPrefix = "bccstop.ledger/"
)

// LedgerKey is the ledger key of a command identity: any printable string
// can be an identity, but keys allow only [-/_=.A-Za-z0-9], so it is a hash.
func LedgerKey(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return "c." + hex.EncodeToString(sum[:16])
}

// LedgerOutcome reads, from a ledger entry, the result event of a decided
// command: done is false for an entry of a command not yet decided, and
// err non-nil for one this release cannot read.
func LedgerOutcome(raw []byte) (event json.RawMessage, done bool, err error) {
	switch {
	case bytes.HasPrefix(raw, []byte(LedgerMagic)):
		raw = raw[len(LedgerMagic):]
	case bytes.HasPrefix(raw, []byte(LedgerVersionPrefix)):
		return nil, false, errors.New("ledger entry of an unknown version")
	}
	var e struct {
		State string          `json:"state"`
		Event json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, false, err
	}
	return e.Event, e.State == "done" && len(e.Event) > 0, nil
}
