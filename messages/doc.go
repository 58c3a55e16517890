// Package messages is bccstop's wire vocabulary: the stop command, the
// CloudEvents result event, outcomes, error codes and subjects, with strict
// decoding and validation.
//
// It imports no NATS, HTTP or OpenTelemetry packages, so any system that
// publishes commands or consumes results can import it. Everything here is
// safe for concurrent use; values are plain data.
package messages
