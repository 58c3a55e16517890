package messages

import (
	"encoding/json"
	"fmt"
	"time"
)

// CloudEvents attributes of every result event.
const (
	SpecVersion     = "1.0"
	DataContentType = "application/json"
	// SourcePrefix begins the source attribute: "bccstop/<worker id>".
	SourcePrefix = "bccstop/"
	// ResultSchema is the dataschema of every result event: the JSON Schema
	// of the whole event, in this module (see Schemas).
	ResultSchema = "https://github.com/bccstop/bccstop/messages/schema/result.schema.json"
)

// ResultEvent is the CloudEvents 1.0 event (structured mode) published once
// per command identity on ResultSubject(Data.Outcome).
type ResultEvent struct {
	SpecVersion     string     `json:"specversion"`
	ID              string     `json:"id"`
	Source          string     `json:"source"`
	Type            string     `json:"type"`
	Subject         string     `json:"subject,omitempty"` // the instance id; absent only when the command named none
	Time            time.Time  `json:"time"`
	DataContentType string     `json:"datacontenttype"`
	DataSchema      string     `json:"dataschema,omitempty"`
	Data            ResultData `json:"data"`
}

// ResultData is the event's data. The contract's fields are always present
// ("" or 0 when they do not apply); the fields after Attempts are additions.
type ResultData struct {
	CommandID  string  `json:"commandId"`
	InstanceID string  `json:"instanceId"`
	ForceStop  bool    `json:"forceStop"`
	Outcome    Outcome `json:"outcome"`
	// Code is the BCE error code when the API gave one, one of the Code*
	// constants of this package otherwise, and empty on success.
	Code    string `json:"code"`
	Message string `json:"message"`
	// HTTPStatus is the last API status; 0 when no call was made.
	HTTPStatus int `json:"httpStatus"`
	// RequestID is the x-bce-request-id of the last API answer.
	RequestID string `json:"requestId"`
	// Attempts counts deliveries of the command so far, as JetStream counts them.
	Attempts int `json:"attempts"`

	// StopWithNoCharge echoes the command.
	StopWithNoCharge bool `json:"stopWithNoCharge"`
	// Region echoes the command's region ("" for the default endpoint).
	Region string `json:"region"`
	// Reconciled is true when an earlier attempt may have reached the API,
	// the retry was answered 409, and describing the instance showed the
	// stop had gone through (Stopping or Stopped).
	Reconciled bool `json:"reconciled"`
	// InstanceStatus is the last instance status the worker saw (while
	// reconciling, or waiting until Stopped), else "".
	InstanceStatus string `json:"instanceStatus"`
	// StoppedAt is when the instance was first seen Stopped (RFC 3339, UTC),
	// for a command that asked to wait for it; else "".
	StoppedAt string `json:"stoppedAt"`
	// NotAfter and WaitUntilStopped echo the command's.
	NotAfter         string `json:"notAfter"`
	WaitUntilStopped bool   `json:"waitUntilStopped"`
	// Reason and RequestedBy echo the command's audit trail ("" when absent).
	Reason      string `json:"reason"`
	RequestedBy string `json:"requestedBy"`
	// LastCode is the last BCE or transport code seen before a
	// RetriesExhausted failure, else "".
	LastCode string `json:"lastCode,omitempty"`
	// WorkerID names the worker that decided the outcome.
	WorkerID string `json:"workerId"`
}

// NewResultEvent builds the event for data, decided by worker workerID at t.
// The event id must be unique per command identity; the caller chooses it so
// that a repeated result can repeat it too.
func NewResultEvent(id, workerID string, t time.Time, data ResultData) ResultEvent {
	data.WorkerID = workerID
	return ResultEvent{
		SpecVersion:     SpecVersion,
		ID:              id,
		Source:          SourcePrefix + workerID,
		Type:            data.Outcome.EventType(),
		Subject:         data.InstanceID,
		Time:            t.UTC().Truncate(time.Millisecond),
		DataContentType: DataContentType,
		DataSchema:      ResultSchema,
		Data:            data,
	}
}

// DecodeResultEvent decodes a result event and checks the attributes a
// consumer relies on. Unknown fields are allowed: the contract may add some.
func DecodeResultEvent(payload []byte) (ResultEvent, error) {
	var ev ResultEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return ResultEvent{}, fmt.Errorf("decode result event: %w", err)
	}
	if ev.SpecVersion != SpecVersion {
		return ev, fmt.Errorf("decode result event: specversion %q, want %q", ev.SpecVersion, SpecVersion)
	}
	if !ev.Data.Outcome.Valid() {
		return ev, fmt.Errorf("decode result event: unknown outcome %q", ev.Data.Outcome)
	}
	if ev.Type != ev.Data.Outcome.EventType() {
		return ev, fmt.Errorf("decode result event: type %q does not match outcome %q", ev.Type, ev.Data.Outcome)
	}
	return ev, nil
}
