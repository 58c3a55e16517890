package messages

import "time"

// Control events say when and why the fleet of workers was held or a
// guardrail acted: a fleet pause and its end, the blast-radius budget
// tripping, and holds on instances placed or ended. They are CloudEvents
// 1.0 (structured mode) on ControlSubject(action), published only by
// workers (section 7 of the contract), for downstream systems that must
// know when automation was not acting on commands.
const (
	// ControlSubjectPrefix prefixes every control subject.
	ControlSubjectPrefix = "bcc.instance.stop.control."
	// ControlSubjects matches every control subject.
	ControlSubjects = ControlSubjectPrefix + ">"

	// ControlPaused: the fleet was paused, or the terms of its pause changed
	// (bccstop pause --force).
	ControlPaused = "paused"
	// ControlResumed: the fleet runs again, by bccstop resume or because the
	// pause ran out (Automatic); exactly one per pause.
	ControlResumed = "resumed"
	// ControlTripped: the blast-radius budget (BCCSTOP_MAX_STOPS) was
	// reached and the fleet paused itself; a paused event for the same
	// pause follows.
	ControlTripped = "tripped"
	// ControlHeld: instances were held (bccstop hold).
	ControlHeld = "held"
	// ControlReleased: a hold ended, by bccstop release or because it ran
	// out (Automatic).
	ControlReleased = "released"
)

// ControlActions lists every control action.
var ControlActions = []string{ControlPaused, ControlResumed, ControlTripped, ControlHeld, ControlReleased}

// ControlSubject returns the subject of a control event, for example
// "bcc.instance.stop.control.paused".
func ControlSubject(action string) string { return ControlSubjectPrefix + action }

// ControlEvent is the CloudEvent of a control action; its type is
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

// ControlData is a control event's data. Every field is always present
// ("" or 0 or an empty list when it does not apply).
type ControlData struct {
	// Action is one of ControlActions.
	Action string `json:"action"`
	// Stream and Consumer name the durable consumer every worker shares.
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// PauseID names one paused span: its paused, tripped and resumed events
	// carry the same id ("" for holds).
	PauseID string `json:"pauseId"`
	// PausedUntil is when a pause ends by itself (RFC 3339, UTC); "" for a
	// pause until bccstop resume, and on other actions.
	PausedUntil string `json:"pausedUntil"`
	// Reason and RequestedBy say why and who ("" when not given).
	Reason      string `json:"reason"`
	RequestedBy string `json:"requestedBy"`
	// Automatic is true for what no one asked for at that moment: a resume
	// because the pause ran out, a budget trip, a hold that ran out.
	Automatic bool `json:"automatic"`
	// Budget is the blast-radius budget ("50/1m") and BudgetUsed the stops
	// counted in its window, on tripped and resumed events when a budget is
	// set.
	Budget     string `json:"budget"`
	BudgetUsed int    `json:"budgetUsed"`
	// InstanceIDs and HoldUntil (RFC 3339, UTC) are the instances held or
	// released and until when the hold was to last.
	InstanceIDs []string `json:"instanceIds"`
	HoldUntil   string   `json:"holdUntil"`
}

// NewControlEvent builds the event for data, sent by source at t.
func NewControlEvent(id, source string, t time.Time, data ControlData) ControlEvent {
	if data.InstanceIDs == nil {
		data.InstanceIDs = []string{}
	}
	return ControlEvent{SpecVersion: SpecVersion, ID: id, Source: source, Type: "bcc.instance.stop.control." + data.Action,
		Time: t.UTC().Truncate(time.Millisecond), DataContentType: DataContentType, Data: data}
}
