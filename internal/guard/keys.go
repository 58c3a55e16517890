package guard

import (
	"strings"
	"time"
)

// keyToken encodes s as one token of a key-value key or a subject: bytes
// outside [A-Za-z0-9_-] are written =XX (upper-case hex), '=' included, so
// the encoding is reversible and never holds a '.' or a wildcard.
func keyToken(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
	}
	return b.String()
}

// wholeSeconds rounds d up to whole seconds, at least one: the server
// reads a Nats-TTL header in whole seconds (it drops the fraction).
func wholeSeconds(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}
