package messages_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bccstop/bccstop/messages"
)

func BenchmarkDecodeCommand(b *testing.B) {
	payload := []byte(`{"instanceId":"i-YufwpQAe","forceStop":true,"commandId":"job-42.i-YufwpQAe"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := messages.DecodeCommandMessage(payload, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	data := messages.ResultData{CommandID: "job-42.i-YufwpQAe", InstanceID: "i-YufwpQAe", Outcome: messages.Succeeded,
		HTTPStatus: 200, RequestID: "79f8314e-bd3a-426e-be81-4b382d9f7a26", Attempts: 1}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(messages.NewResultEvent("da8666ea-5f58-223e-f32b-5f18ab81f9b6", "worker-1", now, data)); err != nil {
			b.Fatal(err)
		}
	}
}
