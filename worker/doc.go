// Package worker consumes stop commands from NATS JetStream and turns each
// into exactly one result event.
//
// For every delivery the flow is: decode and validate the command, claim it
// in the idempotency ledger, call the BCC API, decide the outcome, record it
// in the ledger, publish the result event and wait for JetStream to store it,
// and only then acknowledge the command. One function, settle, makes the
// single ack / nak / term decision; tracing, metrics, logging and panic
// recovery wrap the handler as middleware.
package worker
