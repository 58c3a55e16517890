package messages

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the event's JSON to b: exactly what encoding/json's
// Marshal makes of it (the test FuzzAppendJSONMatchesMarshal holds it to
// that), without reflection, for the worker's hot path.
func (e *ResultEvent) AppendJSON(b []byte) []byte {
	b = append(b, `{"specversion":`...)
	b = AppendJSONString(b, e.SpecVersion)
	b = append(b, `,"id":`...)
	b = AppendJSONString(b, e.ID)
	b = append(b, `,"source":`...)
	b = AppendJSONString(b, e.Source)
	b = append(b, `,"type":`...)
	b = AppendJSONString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = AppendJSONString(b, e.Subject)
	}
	b = append(b, `,"time":`...)
	b = appendTime(b, e.Time)
	b = append(b, `,"datacontenttype":`...)
	b = AppendJSONString(b, e.DataContentType)
	if e.DataSchema != "" {
		b = append(b, `,"dataschema":`...)
		b = AppendJSONString(b, e.DataSchema)
	}
	b = append(b, `,"data":`...)
	b = e.Data.appendJSON(b)
	return append(b, '}')
}

func (d *ResultData) appendJSON(b []byte) []byte {
	b = append(b, `{"commandId":`...)
	b = AppendJSONString(b, d.CommandID)
	b = append(b, `,"instanceId":`...)
	b = AppendJSONString(b, d.InstanceID)
	b = append(b, `,"forceStop":`...)
	b = strconv.AppendBool(b, d.ForceStop)
	b = append(b, `,"outcome":`...)
	b = AppendJSONString(b, string(d.Outcome))
	b = append(b, `,"code":`...)
	b = AppendJSONString(b, d.Code)
	b = append(b, `,"message":`...)
	b = AppendJSONString(b, d.Message)
	b = append(b, `,"httpStatus":`...)
	b = strconv.AppendInt(b, int64(d.HTTPStatus), 10)
	b = append(b, `,"requestId":`...)
	b = AppendJSONString(b, d.RequestID)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(d.Attempts), 10)
	b = append(b, `,"stopWithNoCharge":`...)
	b = strconv.AppendBool(b, d.StopWithNoCharge)
	b = append(b, `,"region":`...)
	b = AppendJSONString(b, d.Region)
	b = append(b, `,"reconciled":`...)
	b = strconv.AppendBool(b, d.Reconciled)
	b = append(b, `,"instanceStatus":`...)
	b = AppendJSONString(b, d.InstanceStatus)
	b = append(b, `,"stoppedAt":`...)
	b = AppendJSONString(b, d.StoppedAt)
	b = append(b, `,"notAfter":`...)
	b = AppendJSONString(b, d.NotAfter)
	b = append(b, `,"waitUntilStopped":`...)
	b = strconv.AppendBool(b, d.WaitUntilStopped)
	b = append(b, `,"reason":`...)
	b = AppendJSONString(b, d.Reason)
	b = append(b, `,"requestedBy":`...)
	b = AppendJSONString(b, d.RequestedBy)
	if d.LastCode != "" {
		b = append(b, `,"lastCode":`...)
		b = AppendJSONString(b, d.LastCode)
	}
	b = append(b, `,"workerId":`...)
	b = AppendJSONString(b, d.WorkerID)
	return append(b, '}')
}

// appendTime is time.Time's MarshalJSON (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it: quotes, backslashes and control characters; <, > and & (for
// HTML); U+2028 and U+2029; invalid UTF-8 as U+FFFD.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
