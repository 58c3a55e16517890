package messages

// Outcome is the terminal result of one command identity.
type Outcome string

// The four outcomes of the contract.
const (
	// Succeeded: the API accepted the stop (2xx), possibly after transient faults.
	Succeeded Outcome = "succeeded"
	// Forbidden: HTTP 409 Instance.StopInstanceOperationForbidden, the
	// instance was not Running.
	Forbidden Outcome = "forbidden"
	// Failed: any other API error, or transient errors past the retry budget.
	Failed Outcome = "failed"
	// Rejected: the command itself is invalid; no API call was made.
	Rejected Outcome = "rejected"
)

// Outcomes lists every outcome, in the contract's order.
var Outcomes = []Outcome{Succeeded, Forbidden, Failed, Rejected}

// Valid reports whether o is one of the four outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case Succeeded, Forbidden, Failed, Rejected:
		return true
	}
	return false
}

// EventType returns the CloudEvents type of a result with this outcome,
// for example "bcc.instance.stop.succeeded".
func (o Outcome) EventType() string { return "bcc.instance.stop." + string(o) }

// Error codes carried in ResultData.Code. BCE codes (from the API) are passed
// through unchanged; these are the ones bccstop defines itself.
const (
	// CodeForbidden is the BCE code that makes an outcome Forbidden.
	CodeForbidden = "Instance.StopInstanceOperationForbidden"
	// CodeInvalidCommand: the payload could not be decoded or failed validation.
	CodeInvalidCommand = "InvalidCommand"
	// CodeUnknownRegion: the command names a region the worker has no endpoint for.
	CodeUnknownRegion = "UnknownRegion"
	// CodeInstanceProtected: the instance is listed in BCCSTOP_PROTECTED_INSTANCES.
	CodeInstanceProtected = "InstanceProtected"
	// CodeInstanceHeld: the instance is held (bccstop hold) until a time;
	// the message says who holds it, why and until when.
	CodeInstanceHeld = "InstanceHeld"
	// CodeRetriesExhausted: transient errors lasted past BCCSTOP_MAX_DELIVER deliveries.
	CodeRetriesExhausted = "RetriesExhausted"
	// CodeTransportError: the API could not be reached (connection error,
	// timeout) and no BCE code exists.
	CodeTransportError = "TransportError"
	// CodeInternalError: the worker itself failed while handling the command.
	CodeInternalError = "InternalError"
	// CodeExpired: the command was taken after its notAfter, or after
	// waiting longer than BCCSTOP_MAX_COMMAND_AGE in the stream; the API
	// was not called.
	CodeExpired = "Expired"
	// CodeCommandIDConflict: the identity was already used for a command
	// with different content; this one is not acted on.
	CodeCommandIDConflict = "CommandIdConflict"
	// CodeOutcomeUnknown: an attempt's fate is unknown (timeout, broken
	// connection, 5xx, a worker died mid-call) and the instance could not be
	// described to settle it: the stop may have taken effect.
	CodeOutcomeUnknown = "OutcomeUnknown"
	// CodeStopTimedOut: with waitUntilStopped, the instance was not Stopped
	// within BCCSTOP_STOP_WAIT_TIMEOUT.
	CodeStopTimedOut = "StopTimedOut"
	// CodeUnexpectedRedirect: the API answered with a redirect, which is
	// never followed (credentials go only to the configured endpoint).
	CodeUnexpectedRedirect = "UnexpectedRedirect"
	// CodeInvalidSchedule: a schedule request, or a schedule found in the
	// commands stream of an earlier release, is not a one-shot "@at" aimed
	// at bcc.instance.stop with a valid id and time: it is refused and
	// removed, and its command is never acted on.
	CodeInvalidSchedule = "InvalidSchedule"
	// CodeScheduleConflict: a schedule request names a schedule id that
	// another, different schedule holds; neither is changed.
	CodeScheduleConflict = "ScheduleConflict"
)
