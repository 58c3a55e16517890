package messages

import "time"

// Control events say when and why the fleet of workers was held: a fleet
// pause (`bccstop pause`) and its end (`bccstop resume`, or the pause
// running out). They are CloudEvents 1.0 (structured mode) on
// ControlSubject(action), for downstream systems that must know when
// automation was not acting on commands.
const (
	// ControlSubjectPrefix prefixes every control subject.
	ControlSubjectPrefix = "bcc.instance.stop.control."
	// ControlSubjects matches every control subject.
	ControlSubjects = ControlSubjectPrefix + ">"

	// ControlPaused and ControlResumed are the two actions.
	ControlPaused  = "paused"
	ControlResumed = "resumed"
)

// ControlSubject returns the subject of a control event, for example
// "bcc.instance.stop.control.paused".
func ControlSubject(action string) string { return ControlSubjectPrefix + action }

// ControlEvent is the CloudEvent of a pause or resume; its type is
// "bcc.instance.stop.control.<action>".
type ControlEvent struct {
	SpecVersion     string      `json:"specversion"`
	ID              string      `json:"id"`
	Source          string      `json:"source"`
	Type            string      `json:"type"`
	Time            time.Time   `json:"time"`
	DataContentType string      `json:"datacontenttype"`
	Data            ControlData `json:"data"`
}

// ControlData is a control event's data.
type ControlData struct {
	// Action is ControlPaused or ControlResumed.
	Action string `json:"action"`
	// Stream and Consumer name the durable consumer every worker shares.
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// PausedUntil is when a pause ends by itself (RFC 3339, UTC); "" on resume.
	PausedUntil string `json:"pausedUntil"`
	// Reason and RequestedBy say why and who ("" when not given).
	Reason      string `json:"reason"`
	RequestedBy string `json:"requestedBy"`
	// Automatic is true for a resume that came because the pause ran out.
	Automatic bool `json:"automatic"`
}

// NewControlEvent builds the event for data, sent by source at t.
func NewControlEvent(id, source string, t time.Time, data ControlData) ControlEvent {
	return ControlEvent{SpecVersion: SpecVersion, ID: id, Source: source, Type: "bcc.instance.stop.control." + data.Action,
		Time: t.UTC().Truncate(time.Millisecond), DataContentType: DataContentType, Data: data}
}
