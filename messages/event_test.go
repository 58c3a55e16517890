package messages_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bccstop/bccstop/messages"
)

func TestResultEventHasEveryContractField(t *testing.T) {
	ev := messages.NewResultEvent("ev-1", "w1", time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), messages.ResultData{
		CommandID: "c1", InstanceID: "i-YufwpQAe", Outcome: messages.Succeeded, HTTPStatus: 200, Attempts: 1,
	})
	raw, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	json.Unmarshal(raw, &generic)
	want := map[string]any{
		"specversion": "1.0", "id": "ev-1", "source": "bccstop/w1", "type": "bcc.instance.stop.succeeded",
		"subject": "i-YufwpQAe", "time": "2026-11-26T00:00:00Z", "datacontenttype": "application/json",
	}
	for k, v := range want {
		if generic[k] != v {
			t.Errorf("%s = %v, want %v", k, generic[k], v)
		}
	}
	data := generic["data"].(map[string]any)
	for _, k := range []string{"commandId", "instanceId", "forceStop", "outcome", "code", "message", "httpStatus", "requestId", "attempts"} {
		if _, ok := data[k]; !ok {
			t.Errorf("data.%s missing from %s", k, raw)
		}
	}
	back, err := messages.DecodeResultEvent(raw)
	if err != nil || back.Data.CommandID != "c1" || back.Data.Outcome != messages.Succeeded {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if messages.ResultSubject(messages.Forbidden) != "bcc.instance.stop.result.forbidden" {
		t.Fatal("ResultSubject")
	}
}
