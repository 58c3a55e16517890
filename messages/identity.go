package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxHeaderIdentity is the longest identity, in characters, taken from a
// header or a CloudEvent attribute.
const MaxHeaderIdentity = 128

// Identity returns the identity a command gives itself, in the contract's
// order: its commandId; else, for a CloudEvent, its source and id together;
// else its Nats-Msg-Id header (msgID). It returns "" when the command gives
// none: the worker then derives one from the stored message (see
// FallbackIdentity).
//
// An identity from a header or a CloudEvent attribute is untrusted input:
// longer than MaxHeaderIdentity characters, or not printable, it is not used
// and an *InvalidCommandError names the header or attribute. An invalid
// commandId is not used either; Validate reports it.
//
// A CloudEvent's identity is "<source>#<id>", with every '%' and '#' of the
// source written %25 and %23, so two different (source, id) pairs never give
// the same identity.
func Identity(cmd StopCommand, env Envelope, msgID string) (string, error) {
	if ValidCommandID(cmd.CommandID) {
		return cmd.CommandID, nil
	}
	if env.Mode == ModeStructured || env.Mode == ModeBinary {
		if env.EventID == "" || env.Source == "" {
			return "", nil // the decoder has rejected it already
		}
		prefix := ""
		if env.Mode == ModeBinary {
			prefix = "ce-"
		}
		if err := checkHeaderIdentity(prefix+"source", env.Source); err != nil {
			return "", err
		}
		if err := checkHeaderIdentity(prefix+"id", env.EventID); err != nil {
			return "", err
		}
		return sourceEscaper.Replace(env.Source) + "#" + env.EventID, nil
	}
	if msgID == "" {
		return "", nil
	}
	if err := checkHeaderIdentity(HeaderMsgID, msgID); err != nil {
		return "", err
	}
	return msgID, nil
}

var sourceEscaper = strings.NewReplacer("%", "%25", "#", "%23")

func checkHeaderIdentity(name, value string) error {
	if !utf8.ValidString(value) {
		return invalid(name, "is not valid UTF-8, so it cannot name the command")
	}
	if n := utf8.RuneCountInString(value); n > MaxHeaderIdentity {
		return invalid(name, "is %d characters long; an identity is at most %d (use a commandId)", n, MaxHeaderIdentity)
	}
	if !Printable(value) {
		return invalid(name, "has control characters; an identity must be printable")
	}
	return nil
}

// FallbackIdentity is the identity of a command that gives none: the
// stream, the message's sequence in it and the time it was stored (Unix
// nanoseconds), as in "BCCSTOP_COMMANDS-42-1764430812123456789". It is the
// same for every redelivery of the stored message, and never repeats when
// the stream is purged, or deleted and created again, and its sequence
// numbers start over: the stored time is part of it.
func FallbackIdentity(stream string, seq uint64, stored time.Time) string {
	return stream + "-" + strconv.FormatUint(seq, 10) + "-" + strconv.FormatInt(stored.UnixNano(), 10)
}

// Printable reports whether s is valid UTF-8 without control characters
// (line breaks and tabs included) or other unprintable runes.
func Printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}

// Content is the canonical text of what the command asks for: the fields
// that make two commands the same command (instanceId, forceStop,
// stopWithNoCharge, region, notAfter, waitUntilStopped), with notAfter in
// UTC. The identity and the audit fields (reason, requestedBy) are not
// content: a repeat that changes only them is still a repeat. Use it only on
// a valid command.
func (c StopCommand) Content() string {
	notAfter := c.NotAfter
	if t, ok := c.Deadline(); ok {
		notAfter = t.UTC().Format(time.RFC3339Nano)
	}
	var b strings.Builder
	b.Grow(128)
	b.WriteString("instanceId=")
	b.WriteString(c.InstanceID)
	b.WriteString(" forceStop=")
	b.WriteString(strconv.FormatBool(c.ForceStop))
	b.WriteString(" stopWithNoCharge=")
	b.WriteString(strconv.FormatBool(c.StopWithNoCharge))
	b.WriteString(" region=")
	b.WriteString(c.Region)
	b.WriteString(" notAfter=")
	b.WriteString(notAfter)
	b.WriteString(" waitUntilStopped=")
	b.WriteString(strconv.FormatBool(c.WaitUntilStopped))
	return b.String()
}

// Fingerprint is a short hash of Content: equal for the same command, and
// different, for all practical purposes, for any other.
func (c StopCommand) Fingerprint() string { return Fingerprint(c.Content()) }

// Fingerprint hashes a command's content (or, for a payload that is no
// command at all, the payload itself) to 32 hexadecimal digits.
func Fingerprint(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:16])
}
