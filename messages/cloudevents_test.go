package messages_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bccstop/bccstop/messages"
)

func headers(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[strings.ToLower(kv[i])] = kv[i+1]
	}
	return func(k string) string { return m[strings.ToLower(k)] }
}

func TestDecodeCommandMessageAccepts(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		header  func(string) string
		mode    string
		eventID string
		cmd     messages.StopCommand
	}{
		{"plain", `{"instanceId":"i-a"}`, nil, messages.ModePlain, "", messages.StopCommand{InstanceID: "i-a"}},
		{"structured", `{"specversion":"1.0","id":"ev-1","source":"/incidents","type":"bcc.instance.stop","datacontenttype":"application/json","time":"2026-11-26T00:00:00Z","data":{"instanceId":"i-b","forceStop":true}}`,
			nil, messages.ModeStructured, "ev-1", messages.StopCommand{InstanceID: "i-b", ForceStop: true}},
		{"structured with extensions (Knative, tracing)", `{"specversion":"1.0","id":"ev-2","source":"s","type":"com.example.stop","knativearrivaltime":"2026-11-26T00:00:00Z","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","priority":3,"data":{"instanceId":"i-c","commandId":"c-3"}}`,
			nil, messages.ModeStructured, "ev-2", messages.StopCommand{InstanceID: "i-c", CommandID: "c-3"}},
		{"structured by content type", `{"specversion":"1.0","id":"ev-3","source":"s","type":"t","data":{"instanceId":"i-d"}}`,
			headers("Content-Type", "application/cloudevents+json; charset=utf-8"), messages.ModeStructured, "ev-3", messages.StopCommand{InstanceID: "i-d"}},
		{"binary", `{"instanceId":"i-e"}`, headers("ce-specversion", "1.0", "ce-id", "ev-4", "ce-source", "argo", "ce-type", "bcc.instance.stop", "content-type", "application/json"),
			messages.ModeBinary, "ev-4", messages.StopCommand{InstanceID: "i-e"}},
		{"binary, capitalised headers", `{"instanceId":"i-f"}`, headers("Ce-Specversion", "1.0", "Ce-Id", "ev-5", "Ce-Source", "s", "Ce-Type", "t"),
			messages.ModeBinary, "ev-5", messages.StopCommand{InstanceID: "i-f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, env, err := messages.DecodeCommandMessage([]byte(tc.payload), tc.header)
			if err != nil {
				t.Fatal(err)
			}
			if env.Mode != tc.mode || env.EventID != tc.eventID || cmd.InstanceID != tc.cmd.InstanceID || cmd.ForceStop != tc.cmd.ForceStop || cmd.CommandID != tc.cmd.CommandID {
				t.Fatalf("got %+v %+v", cmd, env)
			}
		})
	}
}

func TestDecodeCommandMessageRejects(t *testing.T) {
	ce := func(data string) string {
		return `{"specversion":"1.0","id":"ev","source":"s","type":"t","data":` + data + `}`
	}
	tests := []struct {
		name, payload string
		header        func(string) string
		field, says   string
	}{
		{"wrong spec version", `{"specversion":"0.3","id":"x","source":"s","type":"t","data":{"instanceId":"i-a"}}`, nil, "specversion", "not supported"},
		{"no id", `{"specversion":"1.0","source":"s","type":"t","data":{"instanceId":"i-a"}}`, nil, "id", "required"},
		{"no source", `{"specversion":"1.0","id":"x","type":"t","data":{"instanceId":"i-a"}}`, nil, "source", "required"},
		{"no type", `{"specversion":"1.0","id":"x","source":"s","data":{"instanceId":"i-a"}}`, nil, "type", "required"},
		{"no data", `{"specversion":"1.0","id":"x","source":"s","type":"t"}`, nil, "data", "required"},
		{"base64 data", `{"specversion":"1.0","id":"x","source":"s","type":"t","data_base64":"e30="}`, nil, "data_base64", "not accepted"},
		{"xml data", `{"specversion":"1.0","id":"x","source":"s","type":"t","datacontenttype":"application/xml","data":{"instanceId":"i-a"}}`, nil, "datacontenttype", "not application/json"},
		{"bad extension name", `{"specversion":"1.0","id":"x","source":"s","type":"t","Bad-Name":1,"data":{"instanceId":"i-a"}}`, nil, `"Bad-Name"`, "not a CloudEvents attribute"},
		{"object attribute", `{"specversion":"1.0","id":"x","source":"s","type":"t","ext":{"a":1},"data":{"instanceId":"i-a"}}`, nil, `"ext"`, "must be strings"},
		{"id not a string", `{"specversion":"1.0","id":7,"source":"s","type":"t","data":{"instanceId":"i-a"}}`, nil, "id", "must be a string"},
		{"duplicate attribute", `{"specversion":"1.0","id":"x","id":"y","source":"s","type":"t","data":{"instanceId":"i-a"}}`, nil, `"id"`, "more than once"},
		{"bad command in data", ce(`{"instanceId":"nope"}`), nil, "data.instanceId", "does not match"},
		{"unknown field in data", ce(`{"instanceId":"i-a","x":1}`), nil, `data."x"`, "unknown field"},
		{"data not an object", ce(`"i-a"`), nil, "data", "must be a JSON object"},
		{"trailing data", ce(`{"instanceId":"i-a"}`) + `x`, nil, "", ""},
		{"binary without id", `{"instanceId":"i-a"}`, headers("ce-specversion", "1.0", "ce-source", "s", "ce-type", "t"), "ce-id", "required"},
		{"binary with a bad command", `{"instanceId":1}`, headers("ce-specversion", "1.0", "ce-id", "x", "ce-source", "s", "ce-type", "t"), "instanceId", "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := messages.DecodeCommandMessage([]byte(tc.payload), tc.header)
			var inv *messages.InvalidCommandError
			if !errors.As(err, &inv) {
				t.Fatalf("err = %v", err)
			}
			if inv.Field != tc.field || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v (field %q), want field %q saying %q", err, inv.Field, tc.field, tc.says)
			}
		})
	}
}
