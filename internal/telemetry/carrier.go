package telemetry

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// HeaderCarrier carries W3C trace context in NATS headers. NATS header keys
// are case-sensitive and other clients read "traceparent" in lower case, so
// Set writes keys as given (the propagators use lower case) instead of
// canonicalising them like propagation.HeaderCarrier would; Get also finds
// keys that another client capitalised.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if vs := c[key]; len(vs) > 0 {
		return vs[0]
	}
	for k, vs := range c {
		if len(vs) > 0 && strings.EqualFold(k, key) {
			return vs[0]
		}
	}
	return ""
}

// Set replaces key's value.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys present.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
