package messages

// Subjects, as fixed by the contract.
const (
	// CommandSubject is where stop commands are published.
	CommandSubject = "bcc.instance.stop"
	// ResultSubjectPrefix prefixes every result subject; the outcome follows it.
	ResultSubjectPrefix = "bcc.instance.stop.result."
	// ResultSubjects matches every result subject.
	ResultSubjects = ResultSubjectPrefix + ">"
	// ScheduleSubjectPrefix prefixes the subject of a schedule request
	// (`bccstop stop --at`): one subject per schedule, its id (see
	// ValidScheduleID) after the prefix, with the time in the
	// HeaderSchedule header. Requests are stored in the commands stream,
	// which refuses JetStream's own Nats-Schedule headers (a stream that
	// allows message schedules must allow roll-ups, so anyone who may write
	// to it could erase it); a worker checks each request and stores the
	// schedule in a stream only workers write, from which JetStream
	// delivers it on CommandSubject at its time.
	ScheduleSubjectPrefix = CommandSubject + ".schedule."
	// ScheduleSubjects matches every schedule request subject.
	ScheduleSubjects = ScheduleSubjectPrefix + ">"
)

// ResultSubject returns the subject a result with outcome o is published on,
// for example "bcc.instance.stop.result.succeeded".
func ResultSubject(o Outcome) string { return ResultSubjectPrefix + string(o) }

// Header names used on commands and results.
const (
	// HeaderMsgID is JetStream's de-duplication header; on a command it is the
	// command identity when the payload carries no commandId, and on a result
	// it always holds the command identity.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderSchedule, on a schedule request, says when the command is to
	// be delivered: "@at <RFC 3339 time>", a one-shot, the only pattern
	// accepted (repeating patterns such as "@every 2s" are refused).
	HeaderSchedule = "Bccstop-Schedule"
	// HeaderScheduleTarget, optional on a schedule request, must be
	// CommandSubject when given.
	HeaderScheduleTarget = "Bccstop-Schedule-Target"
	// HeaderBatchID, on a schedule request, names the batch it belongs to
	// (`bccstop stop --batch-id`), so `bccstop schedules cancel --batch-id`
	// can match it exactly.
	HeaderBatchID = "Bccstop-Batch-Id"
	// HeaderScheduler is set by JetStream on a message a schedule fired: the
	// subject of the schedule. Publishers cannot set it (the commands
	// stream refuses it), so it marks a fired command reliably.
	HeaderScheduler = "Nats-Scheduler"
	// HeaderScheduleNext is set by JetStream on a fired message: "purge"
	// for a one-shot schedule, the next time for a repeating one.
	HeaderScheduleNext = "Nats-Schedule-Next"
)

// ScheduleOneShotPrefix starts the only HeaderSchedule value accepted.
const ScheduleOneShotPrefix = "@at "

// MaxScheduleID is the longest schedule id.
const MaxScheduleID = 128

// ValidScheduleID reports whether id can name a schedule: a valid
// commandId (see ValidCommandID) that also forms a subject after
// ScheduleSubjectPrefix, so no empty token: no "..", and no '.' at the end.
func ValidScheduleID(id string) bool {
	if !ValidCommandID(id) || id[len(id)-1] == '.' {
		return false
	}
	for i := 1; i < len(id); i++ {
		if id[i] == '.' && id[i-1] == '.' {
			return false
		}
	}
	return true
}
