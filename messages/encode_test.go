package messages_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/bccstop/bccstop/messages"
)

// FuzzAppendJSONMatchesMarshal: the hand-written encoder of result events
// writes exactly what encoding/json writes, for any strings and numbers.
func FuzzAppendJSONMatchesMarshal(f *testing.F) {
	f.Add("job-1", "i-YufwpQAe", "message with \"quotes\" and <html> & \u2028", "\xff\x00\t", int64(1764430812123456789), 200, 1, true)
	f.Add("", "", "", "", int64(0), 0, 0, false)
	f.Add("é漢字🙂", "i-a", "\\back\\slash\n", "x\u2029", int64(-62135596800000000), 409, 12, false)
	f.Fuzz(func(t *testing.T, id, inst, msg, other string, nanos int64, status, attempts int, flag bool) {
		ev := messages.NewResultEvent(id, other, time.Unix(0, nanos), messages.ResultData{
			CommandID: id, InstanceID: inst, ForceStop: flag, Outcome: messages.Failed, Code: other, Message: msg,
			HTTPStatus: status, RequestID: other, Attempts: attempts, StopWithNoCharge: !flag, Region: other,
			Reconciled: flag, InstanceStatus: msg, StoppedAt: other, NotAfter: id, WaitUntilStopped: flag,
			Reason: msg, RequestedBy: inst, LastCode: other,
		})
		if flag {
			ev.Subject, ev.DataSchema = "", ""
		}
		want, err := json.Marshal(ev)
		if err != nil {
			return // times out of range: Marshal refuses them, the worker never makes them
		}
		if got := ev.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON:\n%s\nMarshal:\n%s", got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := messages.NewResultEvent("5f0c6c1e-8a43-4bd0-b9b1-2f6f1d0c9a27", "worker-1", time.Now(), messages.ResultData{
		CommandID: "job-42.i-YufwpQAe", InstanceID: "i-YufwpQAe", Outcome: messages.Succeeded, HTTPStatus: 200,
		RequestID: "0f2b8e9c-6d1e-4c52-9a53-7e9a1b8c2d3f", Attempts: 1, Reason: "INC-4711", RequestedBy: "bot"})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = ev.AppendJSON(buf[:0])
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(ev)
		}
	})
}
