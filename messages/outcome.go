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
	// CodeRetriesExhausted: transient errors lasted past BCCSTOP_MAX_DELIVER deliveries.
	CodeRetriesExhausted = "RetriesExhausted"
	// CodeTransportError: the API could not be reached (connection error,
	// timeout) and no BCE code exists.
	CodeTransportError = "TransportError"
	// CodeInternalError: the worker itself failed while handling the command.
	CodeInternalError = "InternalError"
)
