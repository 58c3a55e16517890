package messages

// Subjects, as fixed by the contract.
const (
	// CommandSubject is where stop commands are published.
	CommandSubject = "bcc.instance.stop"
	// ResultSubjectPrefix prefixes every result subject; the outcome follows it.
	ResultSubjectPrefix = "bcc.instance.stop.result."
	// ResultSubjects matches every result subject.
	ResultSubjects = ResultSubjectPrefix + ">"
	// ScheduleSubjectPrefix prefixes the subject of a scheduled command
	// (`bccstop stop --at`): one subject per command, the command id after
	// the prefix, stored in the commands stream and delivered on
	// CommandSubject at its time by JetStream message scheduling.
	ScheduleSubjectPrefix = CommandSubject + ".schedule."
	// ScheduleSubjects matches every schedule subject.
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
)
