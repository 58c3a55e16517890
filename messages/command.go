package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxCommandBytes is the largest command payload accepted (64 KiB).
const MaxCommandBytes = 64 << 10

// StopCommand asks for one BCC instance to be stopped. The zero value is not
// a valid command: InstanceID is required.
type StopCommand struct {
	// InstanceID is the instance to stop, for example "i-YufwpQAe".
	InstanceID string `json:"instanceId"`
	// ForceStop asks the API for a forced stop.
	ForceStop bool `json:"forceStop"`
	// StopWithNoCharge is sent to the API only when true.
	StopWithNoCharge bool `json:"stopWithNoCharge,omitempty"`
	// CommandID, when set, is the command identity (see Identity).
	CommandID string `json:"commandId,omitempty"`
	// Region names an entry of BCC_ENDPOINTS; empty means the default endpoint.
	Region string `json:"region,omitempty"`
	// NotAfter, when set, is an RFC 3339 time after which the command must
	// not be acted on: taken later, it is rejected Expired (see Deadline).
	NotAfter string `json:"notAfter,omitempty"`
	// WaitUntilStopped asks for the result only once the instance is Stopped.
	WaitUntilStopped bool `json:"waitUntilStopped,omitempty"`
	// Reason (at most 512 printable characters) says why the stop was asked.
	Reason string `json:"reason,omitempty"`
	// RequestedBy (at most 128 printable characters) says who or what asked.
	RequestedBy string `json:"requestedBy,omitempty"`

	// regionSet and commandIDSet record that a decoded payload had the
	// field, even empty, which Validate then rejects instead of treating it
	// as absent.
	regionSet, commandIDSet, notAfterSet bool
}

// Limits of the audit fields, in characters.
const (
	MaxReason      = 512
	MaxRequestedBy = 128
)

// InvalidCommandError says why a payload is not a valid command. Field names
// the JSON field at fault, or is empty when the payload as a whole is bad.
type InvalidCommandError struct {
	Field  string
	Reason string
}

func (e *InvalidCommandError) Error() string {
	if e.Field == "" {
		return "invalid command: " + e.Reason
	}
	return "invalid command: " + e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) error {
	return &InvalidCommandError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodeCommand decodes and validates one command payload strictly: it must
// be a single UTF-8 JSON object of at most MaxCommandBytes holding only the
// contract's fields, each at most once and of the right type. Anything else
// is an *InvalidCommandError naming the field; nothing is guessed at (no
// case-insensitive field names, no null for a boolean, no trailing data).
//
// On error the returned command holds the fields decoded before the fault,
// so a rejection can still name the instance; do not act on it.
func DecodeCommand(data []byte) (StopCommand, error) {
	var cmd StopCommand
	if !fastDecode(data, &cmd) {
		cmd = StopCommand{}
		if err := decodeCommandFields(data, &cmd); err != nil {
			return cmd, err
		}
	}
	return cmd, cmd.Validate()
}

// decodeCommandFields does the structural half of DecodeCommand. It walks the
// tokens itself because encoding/json's Unmarshal accepts what the contract
// forbids: duplicate keys (last wins), keys matched case-insensitively, and
// null for any type.
func decodeCommandFields(data []byte, cmd *StopCommand) error {
	if len(data) > MaxCommandBytes {
		return invalid("", "payload is %d bytes, more than the %d allowed", len(data), MaxCommandBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("", "payload is empty, expected a JSON object")
	}
	if !utf8.Valid(data) {
		return invalid("", "payload is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if tok != json.Delim('{') {
		return invalid("", "payload must be a JSON object, got %s", describeToken(tok))
	}
	seen := make(map[string]bool, 9)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, _ := tok.(string) // inside an object the decoder only yields string keys
		if seen[key] {
			return invalid(quoteField(key), "field appears more than once")
		}
		seen[key] = true
		value, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		switch key {
		case "instanceId":
			cmd.InstanceID, err = stringValue(key, value)
		case "commandId":
			cmd.CommandID, err = stringValue(key, value)
			cmd.commandIDSet = true
		case "region":
			cmd.Region, err = stringValue(key, value)
			cmd.regionSet = true
		case "forceStop":
			cmd.ForceStop, err = boolValue(key, value)
		case "stopWithNoCharge":
			cmd.StopWithNoCharge, err = boolValue(key, value)
		case "notAfter":
			cmd.NotAfter, err = stringValue(key, value)
			cmd.notAfterSet = true
		case "waitUntilStopped":
			cmd.WaitUntilStopped, err = boolValue(key, value)
		case "reason":
			cmd.Reason, err = stringValue(key, value)
		case "requestedBy":
			cmd.RequestedBy, err = stringValue(key, value)
		default:
			return invalid(quoteField(key), "unknown field (allowed: %s)", allowedFields)
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "unexpected data after the JSON object")
	}
	return nil
}

const allowedFields = "instanceId, forceStop, stopWithNoCharge, commandId, region, notAfter, waitUntilStopped, reason, requestedBy"

func stringValue(field string, tok json.Token) (string, error) {
	s, ok := tok.(string)
	if !ok {
		return "", invalid(field, "must be a string, got %s", describeToken(tok))
	}
	return s, nil
}

func boolValue(field string, tok json.Token) (bool, error) {
	b, ok := tok.(bool)
	if !ok {
		return false, invalid(field, "must be true or false, got %s", describeToken(tok))
	}
	return b, nil
}

func describeToken(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalid("", "not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return invalid("", "not valid JSON: unexpected end of payload")
	}
	return invalid("", "not valid JSON: %v", err)
}

// quoteField names an unexpected field safely: quoted, escaped and cut short,
// since it comes from the sender.
func quoteField(name string) string { return strconv.Quote(truncate(name, 64)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Validate checks the field rules of the contract and returns an
// *InvalidCommandError for the first field that breaks one.
func (c StopCommand) Validate() error {
	if c.InstanceID == "" {
		return invalid("instanceId", "is required")
	}
	if !ValidInstanceID(c.InstanceID) {
		return invalid("instanceId", "%s does not match ^i-[A-Za-z0-9_-]{1,62}$", quoteValue(c.InstanceID))
	}
	if (c.commandIDSet || c.CommandID != "") && !ValidCommandID(c.CommandID) {
		return invalid("commandId", "%s does not match ^[A-Za-z0-9_=-][A-Za-z0-9_.=-]{0,127}$", quoteValue(c.CommandID))
	}
	if (c.regionSet || c.Region != "") && !validRegion(c.Region) {
		return invalid("region", "%s is not a region name (lower-case letters, digits and '-', as in BCC_ENDPOINTS)", quoteValue(c.Region))
	}
	if c.notAfterSet || c.NotAfter != "" {
		if _, err := time.Parse(time.RFC3339Nano, c.NotAfter); err != nil {
			return invalid("notAfter", "%s is not an RFC 3339 time like 2026-11-29T18:00:00Z", quoteValue(c.NotAfter))
		}
	}
	if err := checkText("reason", c.Reason, MaxReason); err != nil {
		return err
	}
	return checkText("requestedBy", c.RequestedBy, MaxRequestedBy)
}

// Deadline returns the NotAfter time, and whether the command has one. It
// is meaningful only for a valid command.
func (c StopCommand) Deadline() (time.Time, bool) {
	if c.NotAfter == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, c.NotAfter)
	return t, err == nil
}

// checkText holds an audit field to at most max printable characters.
func checkText(field, s string, max int) error {
	if n := utf8.RuneCountInString(s); n > max {
		return invalid(field, "is %d characters long, more than the %d allowed", n, max)
	}
	if !Printable(s) {
		return invalid(field, "must be printable text (no control characters or line breaks)")
	}
	return nil
}

func quoteValue(s string) string { return strconv.Quote(truncate(s, 80)) }

// InstanceIDForm says, for people, what ValidInstanceID accepts.
const InstanceIDForm = "an instance id is i- and then 1 to 62 of A-Z a-z 0-9 _ - (like i-YufwpQAe)"

// ValidInstanceID reports whether id matches ^i-[A-Za-z0-9_-]{1,62}$.
func ValidInstanceID(id string) bool {
	if len(id) < 3 || len(id) > 64 || id[0] != 'i' || id[1] != '-' {
		return false
	}
	for i := 2; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return false
		}
	}
	return true
}

// ValidCommandID reports whether id matches ^[A-Za-z0-9_=-][A-Za-z0-9_.=-]{0,127}$.
func ValidCommandID(id string) bool {
	if len(id) == 0 || len(id) > 128 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !isIDByte(c) && c != '.' && c != '=' {
			return false
		}
	}
	return true
}

func validRegion(r string) bool {
	if len(r) == 0 || len(r) > 32 {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
