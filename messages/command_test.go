package messages_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/messages"
)

func TestDecodeCommandAccepts(t *testing.T) {
	tests := []struct {
		payload string
		want    messages.StopCommand
	}{
		{`{"instanceId":"i-YufwpQAe"}`, messages.StopCommand{InstanceID: "i-YufwpQAe"}},
		{` {"instanceId":"i-YufwpQAe","forceStop":true} `, messages.StopCommand{InstanceID: "i-YufwpQAe", ForceStop: true}},
		{`{"instanceId":"i-a_b-C9","forceStop":false,"stopWithNoCharge":true,"commandId":"job-7.a=b","region":"gz"}`,
			messages.StopCommand{InstanceID: "i-a_b-C9", StopWithNoCharge: true, CommandID: "job-7.a=b", Region: "gz"}},
		{`{"instanceId":"i-` + strings.Repeat("x", 62) + `"}`, messages.StopCommand{InstanceID: "i-" + strings.Repeat("x", 62)}},
	}
	for _, tc := range tests {
		got, err := messages.DecodeCommand([]byte(tc.payload))
		if err != nil {
			t.Errorf("%s: %v", tc.payload, err)
			continue
		}
		if got.InstanceID != tc.want.InstanceID || got.ForceStop != tc.want.ForceStop || got.StopWithNoCharge != tc.want.StopWithNoCharge ||
			got.CommandID != tc.want.CommandID || got.Region != tc.want.Region {
			t.Errorf("%s: got %+v, want %+v", tc.payload, got, tc.want)
		}
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	tests := []struct {
		name, payload, field, reason string
	}{
		{"empty", ``, "", "empty"},
		{"not json", `stop i-abc`, "", "not valid JSON"},
		{"array", `[{"instanceId":"i-a"}]`, "", "must be a JSON object"},
		{"string", `"i-abc"`, "", "must be a JSON object"},
		{"truncated", `{"instanceId":"i-abc"`, "", "not valid JSON"},
		{"trailing data", `{"instanceId":"i-abc"} {"instanceId":"i-def"}`, "", "after the JSON object"},
		{"trailing garbage", `{"instanceId":"i-abc"}x`, "", ""},
		{"missing id", `{"forceStop":true}`, "instanceId", "required"},
		{"empty id", `{"instanceId":""}`, "instanceId", "required"},
		{"bad id prefix", `{"instanceId":"vm-abc"}`, "instanceId", "does not match"},
		{"id too long", `{"instanceId":"i-` + strings.Repeat("x", 63) + `"}`, "instanceId", "does not match"},
		{"path trick", `{"instanceId":"i-../../v2/instance/i-other"}`, "instanceId", "does not match"},
		{"query trick", `{"instanceId":"i-abc?start"}`, "instanceId", "does not match"},
		{"NUL in id", `{"instanceId":"i-abc\u0000"}`, "instanceId", "does not match"},
		{"id wrong type", `{"instanceId":42}`, "instanceId", "must be a string, got a number"},
		{"id null", `{"instanceId":null}`, "instanceId", "got null"},
		{"id object", `{"instanceId":{"a":[[[[1]]]]}}`, "instanceId", "got an object"},
		{"force string", `{"instanceId":"i-abc","forceStop":"true"}`, "forceStop", "must be true or false, got a string"},
		{"force number", `{"instanceId":"i-abc","forceStop":1}`, "forceStop", "got a number"},
		{"force null", `{"instanceId":"i-abc","forceStop":null}`, "forceStop", "got null"},
		{"unknown field", `{"instanceId":"i-abc","force":true}`, `"force"`, "unknown field"},
		{"case-folded field", `{"InstanceId":"i-abc"}`, `"InstanceId"`, "unknown field"},
		{"duplicate key", `{"instanceId":"i-abc","instanceId":"i-def"}`, `"instanceId"`, "more than once"},
		{"bad command id", `{"instanceId":"i-abc","commandId":".hidden"}`, "commandId", "does not match"},
		{"command id with space", `{"instanceId":"i-abc","commandId":"a b"}`, "commandId", "does not match"},
		{"empty command id", `{"instanceId":"i-abc","commandId":""}`, "commandId", "does not match"},
		{"empty region", `{"instanceId":"i-abc","region":""}`, "region", "not a region name"},
		{"region upper", `{"instanceId":"i-abc","region":"BJ"}`, "region", "not a region name"},
		{"huge number", `{"instanceId":"i-abc","forceStop":1e999999}`, "forceStop", "got a number"},
		{"invalid utf8", "{\"instanceId\":\"i-abc\xff\"}", "", "UTF-8"},
		{"deep nesting", strings.Repeat("[", 60000), "", "must be a JSON object"},
		{"oversize", `{"instanceId":"i-abc","commandId":"` + strings.Repeat("a", messages.MaxCommandBytes) + `"}`, "", "more than the 65536 allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := messages.DecodeCommand([]byte(tc.payload))
			var inv *messages.InvalidCommandError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v, want *InvalidCommandError", err)
			}
			if inv.Field != tc.field {
				t.Errorf("field = %q, want %q (%v)", inv.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long; it should stay one readable line", len(err.Error()))
			}
		})
	}
}

func TestDecodeKeepsFieldsForRejections(t *testing.T) {
	cmd, err := messages.DecodeCommand([]byte(`{"instanceId":"i-abc","commandId":"c1","bogus":1}`))
	if err == nil || cmd.InstanceID != "i-abc" || cmd.CommandID != "c1" {
		t.Fatalf("got %+v, %v", cmd, err)
	}
}

func TestCommandMarshalsToContract(t *testing.T) {
	raw, _ := json.Marshal(messages.StopCommand{InstanceID: "i-YufwpQAe"})
	if string(raw) != `{"instanceId":"i-YufwpQAe","forceStop":false}` {
		t.Fatalf("marshal = %s", raw)
	}
	if _, err := messages.DecodeCommand(raw); err != nil {
		t.Fatalf("own output does not decode: %v", err)
	}
}

func TestDecodeDeadlineWaitAndAuditFields(t *testing.T) {
	payload := `{"instanceId":"i-a","notAfter":"2026-11-29T10:00:00+01:00","waitUntilStopped":true,"reason":"INC-4711: web-3 compromised","requestedBy":"pagerduty/alice"}`
	for name, decode := range map[string]func([]byte) (messages.StopCommand, error){
		"DecodeCommand": messages.DecodeCommand,
		"full path": func(b []byte) (messages.StopCommand, error) {
			_, full := messages.FastDecodeForTest(b)
			if full == nil {
				return messages.StopCommand{}, errors.New("full path refused it")
			}
			return *full, full.Validate()
		},
	} {
		cmd, err := decode([]byte(payload))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		deadline, ok := cmd.Deadline()
		if !ok || !deadline.Equal(time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)) || !cmd.WaitUntilStopped ||
			cmd.Reason != "INC-4711: web-3 compromised" || cmd.RequestedBy != "pagerduty/alice" {
			t.Fatalf("%s: %+v (deadline %v %v)", name, cmd, deadline, ok)
		}
	}
	if _, ok := (messages.StopCommand{InstanceID: "i-a"}).Deadline(); ok {
		t.Error("a command without notAfter has a deadline")
	}
	raw, _ := json.Marshal(messages.StopCommand{InstanceID: "i-a", NotAfter: "2026-11-29T09:00:00Z", WaitUntilStopped: true, Reason: "r", RequestedBy: "w"})
	if string(raw) != `{"instanceId":"i-a","forceStop":false,"notAfter":"2026-11-29T09:00:00Z","waitUntilStopped":true,"reason":"r","requestedBy":"w"}` {
		t.Errorf("marshal = %s", raw)
	}

	for _, tc := range []struct{ name, payload, field, says string }{
		{"notAfter not a time", `{"instanceId":"i-a","notAfter":"tomorrow"}`, "notAfter", "RFC 3339"},
		{"notAfter without zone", `{"instanceId":"i-a","notAfter":"2026-11-29T10:00:00"}`, "notAfter", "RFC 3339"},
		{"notAfter a number", `{"instanceId":"i-a","notAfter":1764406800}`, "notAfter", "must be a string"},
		{"waitUntilStopped a string", `{"instanceId":"i-a","waitUntilStopped":"yes"}`, "waitUntilStopped", "true or false"},
		{"reason too long", `{"instanceId":"i-a","reason":"` + strings.Repeat("é", 513) + `"}`, "reason", "512"},
		{"reason with a newline", `{"instanceId":"i-a","reason":"a\nb"}`, "reason", "printable"},
		{"requestedBy too long", `{"instanceId":"i-a","requestedBy":"` + strings.Repeat("x", 129) + `"}`, "requestedBy", "128"},
		{"requestedBy with escape codes", `{"instanceId":"i-a","requestedBy":"\u001b[2Jroot"}`, "requestedBy", "printable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := messages.DecodeCommand([]byte(tc.payload))
			var inv *messages.InvalidCommandError
			if !errors.As(err, &inv) || inv.Field != tc.field || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want field %s saying %q", err, tc.field, tc.says)
			}
		})
	}
	// reason and requestedBy of exactly the maximum length are fine.
	ok := `{"instanceId":"i-a","reason":"` + strings.Repeat("é", 512) + `","requestedBy":"` + strings.Repeat("x", 128) + `"}`
	if _, err := messages.DecodeCommand([]byte(ok)); err != nil {
		t.Errorf("maximum lengths: %v", err)
	}
}

// TestValidScheduleID: a schedule id is a commandId that also forms a
// subject: no empty token, so "odd." and "a..b" are refused before
// anything is published.
func TestValidScheduleID(t *testing.T) {
	for id, want := range map[string]bool{
		"evening.i-web1": true, "INC-4711": true, "a=b_c-d": true, strings.Repeat("a", 128): true,
		"": false, "odd.": false, "a..b": false, ".a": false, "a b": false, "a*": false, "a>": false, strings.Repeat("a", 129): false,
	} {
		if got := messages.ValidScheduleID(id); got != want {
			t.Errorf("ValidScheduleID(%q) = %v, want %v", id, got, want)
		}
	}
}
