package messages_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bccstop/bccstop/messages"
)

// FuzzDecodeCommand: decoding any input never panics; an accepted command is
// valid and survives a round trip unchanged; a refusal is an
// *InvalidCommandError whose text is one printable line of bounded length.
func FuzzDecodeCommand(f *testing.F) {
	seeds := []string{
		// The contract's examples.
		`{"instanceId":"i-YufwpQAe"}`,
		`{"instanceId":"i-YufwpQAe","forceStop":true}`,
		`{"instanceId":"i-YufwpQAe","forceStop":false,"stopWithNoCharge":true,"commandId":"job-42","region":"gz"}`,
		`{"instanceId":"i-YufwpQAe","notAfter":"2026-11-29T18:00:00Z","waitUntilStopped":true,"reason":"INC-4711","requestedBy":"bot"}`,
		`{"instanceId":"i-a","notAfter":"","reason":"a\nb","requestedBy":"\u202e"}`,
		`{"instanceId":"i-a","commandId":"specversion"}`,
		// Nasty ones.
		"{\"instanceId\":\"i-abc\xff\xfe\"}",
		"{\"instanceId\":\"i-abc\x00\"}",
		`{"instanceId":"i-abc\u0000"}`,
		`{"instanceId":"i-\ud800"}`,
		strings.Repeat(`{"a":`, 200) + strings.Repeat("}", 200),
		strings.Repeat("[", 300),
		`{"instanceId":"i-abc","forceStop":1e400}`,
		`{"instanceId":"i-abc","forceStop":-0.0000000000000000000000001}`,
		`{"instanceId":"i-abc","instanceId":"i-def"}`,
		`{"instanceId":"i-abc","INSTANCEID":"i-def"}`,
		`{"instanceId":"i-../../v2/instance/i-x?start"}`,
		`{"instanceId":"i-abc%2F..%2F"}`,
		`{"instanceId":"i-abc","commandId":"../../etc"}`,
		`{"instanceId":"i-abc","commandId":"."}`,
		`{"instanceId":"i-abc","region":"bj\n"}`,
		`{"instanceId":null,"forceStop":null}`,
		`{"instanceId":"i-abc"}{"instanceId":"i-def"}`,
		`{"instanceId":"i-abc"` + strings.Repeat(" ", 100),
		"\ufeff{\"instanceId\":\"i-abc\"}",
		`{"instanceId":"i-abc","__proto__":{}}`,
		`[]`, `null`, `true`, `"i-abc"`, `0`, ``, ` `, `{}`, `{`, `}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"specversion":"1.0","id":"ev","source":"s","type":"t","data":{"instanceId":"i-a"}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"ev","source":"s","type":"t","data":{"instanceId":"i-a"},"data":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The CloudEvents envelope path must hold to the same promises.
		if _, _, err := messages.DecodeCommandMessage(data, nil); err != nil {
			var inv *messages.InvalidCommandError
			if !errors.As(err, &inv) || strings.ContainsAny(err.Error(), "\n\r\x00") {
				t.Fatalf("envelope error %T %q", err, err)
			}
		}
		cmd, err := messages.DecodeCommand(data)
		if err != nil {
			var inv *messages.InvalidCommandError
			if !errors.As(err, &inv) {
				t.Fatalf("error is %T, not *InvalidCommandError: %v", err, err)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r\x00") || !utf8.ValidString(msg) || len(msg) > 400 {
				t.Fatalf("error text is not one bounded printable line: %q", msg)
			}
			return
		}
		if verr := cmd.Validate(); verr != nil {
			t.Fatalf("accepted a command that does not validate: %v", verr)
		}
		if !messages.ValidInstanceID(cmd.InstanceID) {
			t.Fatalf("accepted instance id %q", cmd.InstanceID)
		}
		again, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		back, err := messages.DecodeCommand(again)
		if err != nil {
			t.Fatalf("re-encoded command %s does not decode: %v", again, err)
		}
		if back.Content() != cmd.Content() || back.NotAfter != cmd.NotAfter || back.CommandID != cmd.CommandID ||
			back.Reason != cmd.Reason || back.RequestedBy != cmd.RequestedBy || back.Fingerprint() != cmd.Fingerprint() {
			t.Fatalf("round trip changed %+v into %+v", cmd, back)
		}
	})
}

// FuzzFastDecodeAgrees: whatever the fast path of DecodeCommand accepts, the
// full token-by-token path accepts too, with the same command.
func FuzzFastDecodeAgrees(f *testing.F) {
	for _, s := range []string{
		`{"instanceId":"i-a"}`, ` { "instanceId" : "i-a" , "forceStop" : true } `, `{}`,
		`{"instanceId":"i-a","stopWithNoCharge":false,"commandId":"c.1","region":"gz"}`,
		`{"instanceId":"i-a","instanceId":"i-b"}`, `{"instanceId":"i-\u0041"}`, `{"forceStop":tru}`,
		`{"instanceId":"i-a"}x`, `{"instanceId":"i-a",}`, `{"region":""}`, "{\"instanceId\":\"i-\xff\"}",
		`{"instanceId":"i-a","notAfter":"2026-11-29T18:00:00Z","waitUntilStopped":true,"reason":"r","requestedBy":"w"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, full := messages.FastDecodeForTest(data)
		if fast == nil {
			return
		}
		if full == nil {
			t.Fatalf("fast path accepted %q, the full path refuses it", data)
		}
		if *fast != *full {
			t.Fatalf("%q: fast %+v, full %+v", data, *fast, *full)
		}
	})
}
