package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
)

// Envelope says how a command arrived: plain, or wrapped in a CloudEvent.
type Envelope struct {
	// Mode is "plain", "structured" (a CloudEvents JSON event whose data is
	// the command) or "binary" (ce-* headers around a plain command).
	Mode string
	// EventID, Source and Type are the CloudEvent's, when there is one.
	EventID, Source, Type string
}

// Envelope modes.
const (
	ModePlain      = "plain"
	ModeStructured = "structured"
	ModeBinary     = "binary"
)

// ContentTypeCloudEvents marks a structured-mode CloudEvent.
const ContentTypeCloudEvents = "application/cloudevents+json"

// DecodeCommandMessage decodes a command as it arrives on the command
// subject, in any of three forms:
//
//   - a plain command payload (see DecodeCommand);
//   - a CloudEvents 1.0 event in structured mode (Content-Type
//     application/cloudevents+json, or a JSON object with "specversion")
//     whose data is the command; extension attributes are allowed,
//     data_base64 is not;
//   - a CloudEvents 1.0 event in binary mode: ce-specversion, ce-id,
//     ce-source and ce-type headers around a plain command payload.
//
// header returns a header's value ("" when absent); matching its name
// case-insensitively is up to the caller. Errors are *InvalidCommandError.
// On error the returned command holds what was decoded, as with DecodeCommand.
func DecodeCommandMessage(payload []byte, header func(string) string) (StopCommand, Envelope, error) {
	if header == nil {
		header = func(string) string { return "" }
	}
	if specversion := header("ce-specversion"); specversion != "" {
		env := Envelope{Mode: ModeBinary, EventID: header("ce-id"), Source: header("ce-source"), Type: header("ce-type")}
		if err := checkCloudEvent("ce-", specversion, env); err != nil {
			return StopCommand{}, env, err
		}
		if ct := header("Content-Type"); ct != "" {
			if err := checkDataContentType("Content-Type", ct); err != nil {
				return StopCommand{}, env, err
			}
		}
		cmd, err := DecodeCommand(payload)
		return cmd, env, err
	}
	if isStructured(payload, header("Content-Type")) {
		return decodeStructured(payload)
	}
	cmd, err := DecodeCommand(payload)
	return cmd, Envelope{Mode: ModePlain}, err
}

// isStructured tells a structured CloudEvent from a plain command: its
// content type says so, or its top-level object has a "specversion" key.
// On the hot path this costs a byte search; the key walk runs only when the
// text "specversion" appears at all (say, as a plain command's commandId).
func isStructured(payload []byte, contentType string) bool {
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == ContentTypeCloudEvents {
			return true
		}
	}
	return bytes.Contains(payload, []byte(`"specversion"`)) && hasTopLevelKey(payload, "specversion")
}

// hasTopLevelKey reports whether payload is a JSON object with the key name
// at its top level. Malformed JSON reports false: the plain decoder then
// says what is wrong with it.
func hasTopLevelKey(payload []byte, name string) bool {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if tok == name {
			return true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return false
		}
	}
	return false
}

func checkCloudEvent(prefix, specversion string, env Envelope) error {
	switch {
	case specversion != "1.0":
		return invalid(prefix+"specversion", "CloudEvents %s is not supported; use 1.0", quoteValue(specversion))
	case env.EventID == "":
		return invalid(prefix+"id", "is required in a CloudEvent")
	case env.Source == "":
		return invalid(prefix+"source", "is required in a CloudEvent")
	case env.Type == "":
		return invalid(prefix+"type", "is required in a CloudEvent")
	}
	// source and id together are the command's identity when it has no
	// commandId: they follow the rules of an identity from a header.
	if err := checkHeaderIdentity(prefix+"source", env.Source); err != nil {
		return err
	}
	return checkHeaderIdentity(prefix+"id", env.EventID)
}

// checkDataContentType accepts application/json (any case, with parameters
// such as charset): the command must be JSON.
func checkDataContentType(field, contentType string) error {
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
		return invalid(field, "%s is not application/json", quoteValue(contentType))
	}
	return nil
}

// decodeStructured walks a structured CloudEvent as strictly as
// DecodeCommand walks a command: every attribute once and of the right
// type, extension attributes as the spec names them, data the command.
func decodeStructured(payload []byte) (StopCommand, Envelope, error) {
	env := Envelope{Mode: ModeStructured}
	fail := func(err error) (StopCommand, Envelope, error) { return StopCommand{}, env, err }
	if len(payload) > MaxCommandBytes {
		return fail(invalid("", "payload is %d bytes, more than the %d allowed", len(payload), MaxCommandBytes))
	}
	if !utf8.Valid(payload) {
		return fail(invalid("", "payload is not valid UTF-8"))
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return fail(syntaxError(err))
	}
	if tok != json.Delim('{') {
		return fail(invalid("", "payload must be a JSON object, got %s", describeToken(tok)))
	}
	var (
		specversion, contentType string
		data                     json.RawMessage
		seen                     = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(syntaxError(err))
		}
		key, _ := tok.(string)
		if seen[key] {
			return fail(invalid(quoteField(key), "attribute appears more than once"))
		}
		seen[key] = true
		if key == "data" {
			if err := dec.Decode(&data); err != nil {
				return fail(syntaxError(err))
			}
			continue
		}
		value, err := dec.Token()
		if err != nil {
			return fail(syntaxError(err))
		}
		if d, ok := value.(json.Delim); ok {
			return fail(invalid(quoteField(key), "CloudEvent attributes must be strings, numbers or booleans, got %s", describeToken(d)))
		}
		s, isString := value.(string)
		switch key {
		case "specversion", "id", "source", "type", "datacontenttype", "subject", "time", "dataschema":
			if !isString {
				return fail(invalid(key, "must be a string, got %s", describeToken(value)))
			}
		case "data_base64":
			return fail(invalid("data_base64", "is not accepted: put the command in data as JSON"))
		default:
			if !validExtensionName(key) {
				return fail(invalid(quoteField(key), "is not a CloudEvents attribute (extension names are 1-20 lower-case letters or digits)"))
			}
		}
		switch key {
		case "specversion":
			specversion = s
		case "id":
			env.EventID = s
		case "source":
			env.Source = s
		case "type":
			env.Type = s
		case "datacontenttype":
			contentType = s
		}
	}
	if _, err := dec.Token(); err != nil {
		return fail(syntaxError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail(invalid("", "unexpected data after the JSON object"))
	}
	if specversion == "" {
		return fail(invalid("specversion", "is required in a CloudEvent"))
	}
	if err := checkCloudEvent("", specversion, env); err != nil {
		return fail(err)
	}
	if seen["datacontenttype"] {
		if err := checkDataContentType("datacontenttype", contentType); err != nil {
			return fail(err)
		}
	}
	if len(data) == 0 {
		return fail(invalid("data", "is required: the CloudEvent's data is the stop command"))
	}
	cmd, err := DecodeCommand(data)
	var inv *InvalidCommandError
	if errors.As(err, &inv) {
		inv.Field = strings.TrimPrefix("data."+inv.Field, ".")
		if inv.Field == "data." {
			inv.Field = "data"
		}
	}
	return cmd, env, err
}

func validExtensionName(name string) bool {
	if len(name) == 0 || len(name) > 20 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
