package bulkstop

import (
	"strconv"
	"time"

	"github.com/bccstop/bccstop/messages"
)

// Outcomes only the command line reports, for a command of a run that got
// no result: they never appear on the bus (no worker publishes them, and
// messages.DecodeResultEvent refuses them).
const (
	// OutcomeNoResult: the command was published (stored by JetStream) and
	// no result came while the run waited for it.
	OutcomeNoResult messages.Outcome = "no-result"
	// OutcomeNotSent: the command was not published, or JetStream did not
	// confirm it was stored.
	OutcomeNotSent messages.Outcome = "not-sent"
)

// Codes of the command line's own lines (data.code), saying why a command
// has no result.
const (
	// CodeTimedOut: no-result, no result before --timeout; not-sent, the
	// run's time was up before its wave.
	CodeTimedOut = "TimedOut"
	// CodeInterrupted: the run was interrupted (SIGINT, SIGTERM) while it
	// waited for the result (no-result) or before the command was stored
	// (not-sent).
	CodeInterrupted = "Interrupted"
	// CodeNotWaited: no-result, published and not waited for (--wait=false,
	// or publishing other commands failed).
	CodeNotWaited = "NotWaited"
	// CodeErrorBudgetSpent: not-sent, held back by the error budget.
	CodeErrorBudgetSpent = "ErrorBudgetSpent"
	// CodeScheduled: no-result, stored (or requested) as a schedule with
	// --at: its result comes once it fires.
	CodeScheduled = "Scheduled"
	// CodePublishFailed: not-sent, JetStream refused the command or did
	// not confirm it stored it, or publishing stopped before it after
	// another command failed so.
	CodePublishFailed = "PublishFailed"
)

// CLISourcePrefix begins the source of the command line's own lines,
// "bccstop-cli/<batch id>", never that of a worker ("bccstop/<worker id>").
const CLISourcePrefix = "bccstop-cli/"

// Unanswered is a command of a run that has no result, and why.
type Unanswered struct {
	Command messages.StopCommand
	// Outcome is OutcomeNoResult or OutcomeNotSent.
	Outcome messages.Outcome
	// Code is one of the Code constants of this package; Message says it
	// for people, with what to do.
	Code, Message string
}

// Event is the line --output json writes for u: a CloudEvent of the same
// shape as a worker's result event (the same attributes and data fields,
// without dataschema: the result schema knows only the contract's
// outcomes), from the command line (source "bccstop-cli/<batch>"), decided
// at t. Its message says why, and how to go on.
func (u Unanswered) Event(batch string, t time.Time) messages.ResultEvent {
	c := u.Command
	message := u.Message + "; run the same job again with --batch-id " + batch + " to go on (nothing is stopped twice)"
	if u.Code == CodeScheduled {
		message = u.Message + "; bccstop schedules list shows it, bccstop schedules cancel --batch-id " + batch + " cancels the batch"
	}
	return messages.ResultEvent{
		SpecVersion:     messages.SpecVersion,
		ID:              c.CommandID + "~" + string(u.Outcome) + "-" + strconv.FormatInt(t.UnixNano(), 10),
		Source:          CLISourcePrefix + batch,
		Type:            u.Outcome.EventType(),
		Subject:         c.InstanceID,
		Time:            t.UTC().Truncate(time.Millisecond),
		DataContentType: messages.DataContentType,
		Data: messages.ResultData{
			CommandID: c.CommandID, InstanceID: c.InstanceID, ForceStop: c.ForceStop, Outcome: u.Outcome,
			Code: u.Code, Message: message, StopWithNoCharge: c.StopWithNoCharge, Region: c.Region,
			NotAfter: c.NotAfter, WaitUntilStopped: c.WaitUntilStopped, Reason: c.Reason, RequestedBy: c.RequestedBy,
		},
	}
}
