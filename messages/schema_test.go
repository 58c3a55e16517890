package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/bccstop/bccstop/messages"
)

// schemaBase is where the schemas say they live: each file's $id is its
// path under it, so relative references between them (and from
// asyncapi.yaml) resolve to the registered resources without a network.
const schemaBase = "https://github.com/bccstop/bccstop/messages/"

// contractResultExample is the result event of CONTRACT.md section 3, as
// written there.
const contractResultExample = `{
  "specversion": "1.0",
  "id": "<unique event id>",
  "source": "bccstop/<worker id>",
  "type": "bcc.instance.stop.succeeded",
  "subject": "i-YufwpQAe",
  "time": "2026-11-26T00:00:00Z",
  "datacontenttype": "application/json",
  "data": {
    "commandId": "…",
    "instanceId": "i-YufwpQAe",
    "forceStop": false,
    "outcome": "succeeded",
    "code": "",
    "message": "",
    "httpStatus": 200,
    "requestId": "<x-bce-request-id of the API answer, when there was one>",
    "attempts": 1
  }
}`

type compiledSchemas struct {
	command, commandCE, result, control *jsonschema.Schema
}

// newCompiler registers every file of messages.Schemas under its $id, with
// format assertions on. The compiler's default loader reads only file: URLs,
// so a reference that escaped the registered resources would fail to compile
// rather than reach the network.
func newCompiler(t *testing.T) *jsonschema.Compiler {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	files, err := fs.Glob(messages.Schemas, "schema/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		raw, err := fs.ReadFile(messages.Schemas, name)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		id, _ := doc.(map[string]any)["$id"].(string)
		if id != schemaBase+name {
			t.Fatalf("%s: $id is %q, want %q", name, id, schemaBase+name)
		}
		if err := c.AddResource(id, doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return c
}

func compileSchemas(t *testing.T) compiledSchemas {
	t.Helper()
	c := newCompiler(t)
	compile := func(name string) *jsonschema.Schema {
		s, err := c.Compile(schemaBase + "schema/" + name)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		return s
	}
	return compiledSchemas{
		command:   compile("command.schema.json"),
		commandCE: compile("command-cloudevent.schema.json"),
		result:    compile("result.schema.json"),
		control:   compile("control.schema.json"),
	}
}

func validate(s *jsonschema.Schema, payload []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(doc)
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestSchemasEmbedded(t *testing.T) {
	files, err := fs.Glob(messages.Schemas, "schema/*.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"schema/command-cloudevent.schema.json", "schema/command.schema.json", "schema/control.schema.json", "schema/result.schema.json"}
	if !slices.Equal(files, want) {
		t.Fatalf("messages.Schemas holds %v, want %v", files, want)
	}
}

// TestSchemaExamplesValidate checks each schema's own "examples" against it.
func TestSchemaExamplesValidate(t *testing.T) {
	s := compileSchemas(t)
	for name, sch := range map[string]*jsonschema.Schema{
		"command.schema.json": s.command, "command-cloudevent.schema.json": s.commandCE, "result.schema.json": s.result,
		"control.schema.json": s.control,
	} {
		var doc struct{ Examples []json.RawMessage }
		raw, _ := fs.ReadFile(messages.Schemas, "schema/"+name)
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Examples) == 0 {
			t.Errorf("%s has no examples", name)
		}
		for i, ex := range doc.Examples {
			if err := validate(sch, ex); err != nil {
				t.Errorf("%s example %d: %v", name, i, err)
			}
		}
	}
}

// TestSchemasMatchGoTypes catches drift between the schemas and the Go
// vocabulary: field names, outcomes, event types, CloudEvents attributes.
func TestSchemasMatchGoTypes(t *testing.T) {
	read := func(name string) map[string]any {
		raw, err := fs.ReadFile(messages.Schemas, "schema/"+name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	keys := func(m any) []string {
		var out []string
		for k := range m.(map[string]any) {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}

	cmd := read("command.schema.json")
	if got, want := keys(cmd["properties"]), jsonNames(reflect.TypeFor[messages.StopCommand]()); !slices.Equal(got, want) {
		t.Errorf("command schema properties %v, StopCommand fields %v", got, want)
	}

	res := read("result.schema.json")
	props := res["properties"].(map[string]any)
	dataProps := keys(props["data"].(map[string]any)["properties"])
	for _, name := range jsonNames(reflect.TypeFor[messages.ResultData]()) {
		if !slices.Contains(dataProps, name) {
			t.Errorf("ResultData field %q is not described in result.schema.json", name)
		}
	}
	var outcomes, types []any
	for _, o := range messages.Outcomes {
		outcomes = append(outcomes, string(o))
		types = append(types, o.EventType())
	}
	if got := props["data"].(map[string]any)["properties"].(map[string]any)["outcome"].(map[string]any)["enum"]; !reflect.DeepEqual(got, outcomes) {
		t.Errorf("outcome enum %v, want %v", got, outcomes)
	}
	if got := props["type"].(map[string]any)["enum"]; !reflect.DeepEqual(got, types) {
		t.Errorf("type enum %v, want %v", got, types)
	}
	if got := props["specversion"].(map[string]any)["const"]; got != messages.SpecVersion {
		t.Errorf("specversion const %v, want %v", got, messages.SpecVersion)
	}
	if got := props["datacontenttype"].(map[string]any)["const"]; got != messages.DataContentType {
		t.Errorf("datacontenttype const %v, want %v", got, messages.DataContentType)
	}
	if got := props["source"].(map[string]any)["pattern"]; got != "^"+messages.SourcePrefix {
		t.Errorf("source pattern %v, want ^%s", got, messages.SourcePrefix)
	}

	ctl := read("control.schema.json")
	ctlData := ctl["properties"].(map[string]any)["data"].(map[string]any)
	if got, want := keys(ctlData["properties"]), jsonNames(reflect.TypeFor[messages.ControlData]()); !slices.Equal(got, want) {
		t.Errorf("control schema data properties %v, ControlData fields %v", got, want)
	}
	// A control event the Go code makes is valid.
	ev := messages.NewControlEvent("id-1", "bccstop/cli", time.Date(2026, 11, 29, 17, 0, 0, 0, time.UTC),
		messages.ControlData{Action: messages.ControlResumed, Stream: "S", Consumer: "c", Automatic: true})
	if err := validate(compileSchemas(t).control, mustMarshal(t, ev)); err != nil {
		t.Errorf("a Go control event fails its schema: %v", err)
	}
}

// jsonNames lists the JSON names of a struct's exported fields, sorted.
func jsonNames(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func TestSchemaAcceptsContractExamples(t *testing.T) {
	s := compileSchemas(t)
	for _, payload := range []string{
		`{"instanceId":"i-YufwpQAe"}`, // the nats pub example of section 2
		`{"instanceId":"i-YufwpQAe","forceStop":true}`,
		`{"instanceId":"i-YufwpQAe","forceStop":false,"stopWithNoCharge":true,"commandId":"job-42","region":"gz"}`,
	} {
		if err := validate(s.command, []byte(payload)); err != nil {
			t.Errorf("%s: %v", payload, err)
		}
	}
	if err := validate(s.result, []byte(contractResultExample)); err != nil {
		t.Errorf("the contract's result example: %v", err)
	}
	if _, err := messages.DecodeResultEvent([]byte(contractResultExample)); err != nil {
		t.Errorf("DecodeResultEvent refuses the contract's example: %v", err)
	}
}

func TestSchemaAcceptsGoCommands(t *testing.T) {
	s := compileSchemas(t)
	for _, cmd := range []messages.StopCommand{
		{InstanceID: "i-YufwpQAe"},
		{InstanceID: "i-YufwpQAe", ForceStop: true},
		{InstanceID: "i-a_b-C9", StopWithNoCharge: true, CommandID: "job-7.a=b", Region: "gz"},
		{InstanceID: "i-" + strings.Repeat("x", 62), CommandID: strings.Repeat("c", 128), Region: strings.Repeat("r", 32)},
	} {
		raw := mustMarshal(t, cmd)
		if err := validate(s.command, raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
		ce := mustMarshal(t, map[string]any{
			"specversion": "1.0", "id": "ev-1", "source": "//tests", "type": "bcc.instance.stop", "data": json.RawMessage(raw),
		})
		if err := validate(s.commandCE, ce); err != nil {
			t.Errorf("%s: %v", ce, err)
		}
	}
}

// resultEvents are realistic results as the worker builds them, one or more
// per outcome.
func resultEvents() map[string]messages.ResultEvent {
	at := time.Date(2026, 11, 26, 8, 30, 15, 123456789, time.FixedZone("CST", 8*3600))
	return map[string]messages.ResultEvent{
		"succeeded": messages.NewResultEvent("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "worker-1", at, messages.ResultData{
			CommandID: "job-42", InstanceID: "i-YufwpQAe", Outcome: messages.Succeeded,
			HTTPStatus: 200, RequestID: "0f2b8e9c-6d1e-4c52-9a53-7e9a1b8c2d3f", Attempts: 1, StopWithNoCharge: true, Region: "gz",
		}),
		"succeeded after retries": messages.NewResultEvent("1", "worker-1", at, messages.ResultData{
			CommandID: "BCCSTOP_COMMANDS-7", InstanceID: "i-YufwpQAe", ForceStop: true, Outcome: messages.Succeeded,
			HTTPStatus: 200, RequestID: "r-3", Attempts: 3,
		}),
		"succeeded reconciled": messages.NewResultEvent("2", "worker-2", at, messages.ResultData{
			CommandID: "nats-msg-id-9", InstanceID: "i-YufwpQAe", Outcome: messages.Succeeded,
			Message:    "an earlier attempt stopped the instance: the retry was answered 409 and the instance is Stopping",
			HTTPStatus: 200, RequestID: "r-describe", Attempts: 2, Reconciled: true, InstanceStatus: "Stopping",
		}),
		"forbidden": messages.NewResultEvent("3", "worker-1", at, messages.ResultData{
			CommandID: "job-43", InstanceID: "i-YufwpQAe", Outcome: messages.Forbidden, Code: messages.CodeForbidden,
			Message: "Instance not running when shutting down", HTTPStatus: 409, RequestID: "r-409", Attempts: 1,
		}),
		"failed api error": messages.NewResultEvent("4", "worker-1", at, messages.ResultData{
			CommandID: "job-44", InstanceID: "i-gone1234", Outcome: messages.Failed, Code: "NoSuchObject",
			Message: "The specified object is not found or resource do not exist.", HTTPStatus: 404, RequestID: "r-404", Attempts: 1,
		}),
		"failed retries exhausted": messages.NewResultEvent("5", "worker-3", at, messages.ResultData{
			CommandID: "job-45", InstanceID: "i-YufwpQAe", Outcome: messages.Failed, Code: messages.CodeRetriesExhausted,
			LastCode: messages.CodeTransportError, Message: "gave up after 5 deliveries; last error: dial tcp: i/o timeout",
			HTTPStatus: 0, Attempts: 5,
		}),
		"rejected invalid": messages.NewResultEvent("6", "worker-1", at, messages.ResultData{
			CommandID: "BCCSTOP_COMMANDS-17", InstanceID: "vm-abc", Outcome: messages.Rejected, Code: messages.CodeInvalidCommand,
			Message: `invalid command: instanceId: "vm-abc" does not match ^i-[A-Za-z0-9_-]{1,62}$`, Attempts: 1,
		}),
		"rejected without instance": messages.NewResultEvent("7", "worker-1", at, messages.ResultData{
			CommandID: "BCCSTOP_COMMANDS-18", Outcome: messages.Rejected, Code: messages.CodeInvalidCommand,
			Message: "invalid command: payload must be a JSON object, got an array", Attempts: 1,
		}),
		"rejected unknown region": messages.NewResultEvent("8", "worker-1", at, messages.ResultData{
			CommandID: "job-46", InstanceID: "i-YufwpQAe", Outcome: messages.Rejected, Code: messages.CodeUnknownRegion,
			Message: `invalid command: region: "su" is not configured in BCC_ENDPOINTS`, Attempts: 1, Region: "su",
		}),
		"rejected protected": messages.NewResultEvent("9", "worker-1", at, messages.ResultData{
			CommandID: "job-47", InstanceID: "i-db0000001", Outcome: messages.Rejected, Code: messages.CodeInstanceProtected,
			Message: "instance i-db0000001 is listed in BCCSTOP_PROTECTED_INSTANCES and is never stopped", Attempts: 2,
		}),
	}
}

func TestSchemaAcceptsGoResults(t *testing.T) {
	s := compileSchemas(t)
	seen := map[messages.Outcome]bool{}
	for name, ev := range resultEvents() {
		raw := mustMarshal(t, ev)
		if err := validate(s.result, raw); err != nil {
			t.Errorf("%s: %s\n%v", name, raw, err)
		}
		seen[ev.Data.Outcome] = true
	}
	for _, o := range messages.Outcomes {
		if !seen[o] {
			t.Errorf("no %s result checked", o)
		}
	}
}

func TestSchemaAcceptsCloudEventCommands(t *testing.T) {
	s := compileSchemas(t)
	for _, payload := range []string{
		`{"specversion":"1.0","id":"9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d","source":"//incident-bot","type":"bcc.instance.stop",
		  "datacontenttype":"application/json","data":{"instanceId":"i-YufwpQAe","forceStop":true}}`,
		`{"specversion":"1.0","id":"x","source":"urn:example:scheduler","type":"com.example.nightly.stop",
		  "time":"2026-11-26T00:00:00Z","subject":"nightly","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		  "data":{"instanceId":"i-YufwpQAe","commandId":"nightly-2026-11-26-i-YufwpQAe","region":"bj"}}`,
	} {
		if err := validate(s.commandCE, []byte(payload)); err != nil {
			t.Errorf("%s: %v", payload, err)
		}
	}
}

// mutated returns base (a JSON object) with change applied.
func mutated(t *testing.T, base []byte, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	return mustMarshal(t, m)
}

func dataOf(m map[string]any) map[string]any { return m["data"].(map[string]any) }

func TestSchemasRefuse(t *testing.T) {
	s := compileSchemas(t)
	events := resultEvents()
	succeeded := mustMarshal(t, events["succeeded"])
	forbidden := mustMarshal(t, events["forbidden"])
	rejected := mustMarshal(t, events["rejected without instance"])
	ce := []byte(`{"specversion":"1.0","id":"ev-1","source":"//tests","type":"bcc.instance.stop","data":{"instanceId":"i-YufwpQAe"}}`)

	type refusal struct {
		name    string
		schema  *jsonschema.Schema
		payload []byte
		at      string // where in the payload the schema must find fault, if set
	}
	tests := []refusal{
		{"command: unknown field", s.command, []byte(`{"instanceId":"i-YufwpQAe","force":true}`), ""},
		{"command: case-folded field", s.command, []byte(`{"InstanceId":"i-YufwpQAe"}`), ""},
		{"command: missing instanceId", s.command, []byte(`{"forceStop":true}`), ""},
		{"command: bad instanceId", s.command, []byte(`{"instanceId":"vm-YufwpQAe"}`), "/instanceId"},
		{"command: instanceId too long", s.command, []byte(`{"instanceId":"i-` + strings.Repeat("x", 63) + `"}`), "/instanceId"},
		{"command: instanceId with newline", s.command, []byte(`{"instanceId":"i-abc\n"}`), "/instanceId"},
		{"command: forceStop as string", s.command, []byte(`{"instanceId":"i-YufwpQAe","forceStop":"true"}`), "/forceStop"},
		{"command: forceStop null", s.command, []byte(`{"instanceId":"i-YufwpQAe","forceStop":null}`), "/forceStop"},
		{"command: stopWithNoCharge as number", s.command, []byte(`{"instanceId":"i-YufwpQAe","stopWithNoCharge":1}`), "/stopWithNoCharge"},
		{"command: empty commandId", s.command, []byte(`{"instanceId":"i-YufwpQAe","commandId":""}`), "/commandId"},
		{"command: commandId starting with a dot", s.command, []byte(`{"instanceId":"i-YufwpQAe","commandId":".x"}`), "/commandId"},
		{"command: region in upper case", s.command, []byte(`{"instanceId":"i-YufwpQAe","region":"BJ"}`), "/region"},
		{"command: not an object", s.command, []byte(`["i-YufwpQAe"]`), ""},

		{"result: type does not match outcome", s.result, mutated(t, succeeded, func(m map[string]any) {
			m["type"] = "bcc.instance.stop.failed"
		}), "/type"},
		{"result: unknown type", s.result, mutated(t, succeeded, func(m map[string]any) { m["type"] = "bcc.instance.stop" }), "/type"},
		{"result: missing requestId", s.result, mutated(t, succeeded, func(m map[string]any) { delete(dataOf(m), "requestId") }), "/data"},
		{"result: missing attempts", s.result, mutated(t, succeeded, func(m map[string]any) { delete(dataOf(m), "attempts") }), "/data"},
		{"result: attempts 0", s.result, mutated(t, succeeded, func(m map[string]any) { dataOf(m)["attempts"] = 0 }), "/data/attempts"},
		{"result: httpStatus as string", s.result, mutated(t, succeeded, func(m map[string]any) { dataOf(m)["httpStatus"] = "200" }), "/data/httpStatus"},
		{"result: unknown outcome", s.result, mutated(t, succeeded, func(m map[string]any) { dataOf(m)["outcome"] = "stopped" }), "/data/outcome"},
		{"result: forbidden with another code", s.result, mutated(t, forbidden, func(m map[string]any) {
			dataOf(m)["code"] = "Instance.StopInstanceOperationNotAllowed"
		}), "/data/code"},
		{"result: forbidden without 409", s.result, mutated(t, forbidden, func(m map[string]any) { dataOf(m)["httpStatus"] = 400 }), "/data/httpStatus"},
		{"result: succeeded with a code", s.result, mutated(t, succeeded, func(m map[string]any) { dataOf(m)["code"] = "InternalError" }), "/data/code"},
		{"result: succeeded with status 409", s.result, mutated(t, succeeded, func(m map[string]any) { dataOf(m)["httpStatus"] = 409 }), "/data/httpStatus"},
		{"result: rejected with an API status", s.result, mutated(t, rejected, func(m map[string]any) { dataOf(m)["httpStatus"] = 400 }), "/data/httpStatus"},
		{"result: rejected without code", s.result, mutated(t, rejected, func(m map[string]any) { dataOf(m)["code"] = "" }), "/data/code"},
		{"result: failed with a bad instance id", s.result, mutated(t, succeeded, func(m map[string]any) {
			m["type"], dataOf(m)["outcome"], dataOf(m)["code"], dataOf(m)["instanceId"], m["subject"] = "bcc.instance.stop.failed", "failed", "X", "vm-1", "vm-1"
		}), "/data/instanceId"},
		{"result: reconciled but forbidden", s.result, mutated(t, forbidden, func(m map[string]any) { dataOf(m)["reconciled"] = true }), "/data/outcome"},
		{"result: subject missing", s.result, mutated(t, succeeded, func(m map[string]any) { delete(m, "subject") }), ""},
		{"result: subject without instance", s.result, mutated(t, rejected, func(m map[string]any) { m["subject"] = "i-YufwpQAe" }), ""},
		{"result: specversion 0.3", s.result, mutated(t, succeeded, func(m map[string]any) { m["specversion"] = "0.3" }), "/specversion"},
		{"result: source of another system", s.result, mutated(t, succeeded, func(m map[string]any) { m["source"] = "//other" }), "/source"},
		{"result: time not RFC 3339", s.result, mutated(t, succeeded, func(m map[string]any) { m["time"] = "26/11/2026" }), "/time"},
		{"result: data as a string", s.result, mutated(t, succeeded, func(m map[string]any) {
			m["datacontenttype"], m["data"] = "application/json", `{"outcome":"succeeded"}`
		}), "/data"},

		{"cloudevent: data_base64", s.commandCE, mutated(t, ce, func(m map[string]any) {
			delete(m, "data")
			m["data_base64"] = "eyJpbnN0YW5jZUlkIjoiaS1ZdWZ3cFFBZSJ9"
		}), ""},
		{"cloudevent: data and data_base64", s.commandCE, mutated(t, ce, func(m map[string]any) { m["data_base64"] = "e30=" }), "/data_base64"},
		{"cloudevent: no data", s.commandCE, mutated(t, ce, func(m map[string]any) { delete(m, "data") }), ""},
		{"cloudevent: empty id", s.commandCE, mutated(t, ce, func(m map[string]any) { m["id"] = "" }), "/id"},
		{"cloudevent: no source", s.commandCE, mutated(t, ce, func(m map[string]any) { delete(m, "source") }), ""},
		{"cloudevent: empty type", s.commandCE, mutated(t, ce, func(m map[string]any) { m["type"] = "" }), "/type"},
		{"cloudevent: specversion 1.1", s.commandCE, mutated(t, ce, func(m map[string]any) { m["specversion"] = "1.1" }), "/specversion"},
		{"cloudevent: text data", s.commandCE, mutated(t, ce, func(m map[string]any) { m["datacontenttype"] = "text/plain" }), "/datacontenttype"},
		{"cloudevent: invalid command", s.commandCE, mutated(t, ce, func(m map[string]any) { dataOf(m)["forceStop"] = "yes" }), "/data/forceStop"},
		{"cloudevent: unknown command field", s.commandCE, mutated(t, ce, func(m map[string]any) { dataOf(m)["force"] = true }), "/data"},
	}
	// A type of another outcome, for every outcome.
	for _, name := range []string{"succeeded", "forbidden", "failed api error", "rejected invalid"} {
		ev := events[name]
		for _, o := range messages.Outcomes {
			if o == ev.Data.Outcome {
				continue
			}
			ev.Type = o.EventType()
			tests = append(tests, refusal{"result: " + string(ev.Data.Outcome) + " typed " + string(o), s.result, mustMarshal(t, ev), "/type"})
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.schema, tc.payload)
			var verr *jsonschema.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("%s: got %v, want a validation error", tc.payload, err)
			}
			if tc.at != "" && !slices.Contains(leafLocations(verr), tc.at) {
				t.Errorf("%s: refused, but not at %s:\n%v", tc.payload, tc.at, err)
			}
		})
	}
}

// leafLocations lists where in the instance the innermost causes of err are.
func leafLocations(err *jsonschema.ValidationError) []string {
	if len(err.Causes) == 0 {
		return []string{"/" + strings.Join(err.InstanceLocation, "/")}
	}
	var out []string
	for _, c := range err.Causes {
		out = append(out, leafLocations(c)...)
	}
	return out
}

// TestCommandSchemaAgreesWithDecoder checks DecodeCommand against the command
// schema: whatever the decoder accepts the schema accepts, and for JSON
// objects the schema refuses whatever the decoder refuses, except for the
// rules JSON Schema cannot express (marked inexpressible).
func TestCommandSchemaAgreesWithDecoder(t *testing.T) {
	s := compileSchemas(t)
	check := func(t *testing.T, payload []byte, inexpressible bool) {
		t.Helper()
		_, decErr := messages.DecodeCommand(payload)
		schErr := validate(s.command, payload)
		switch {
		case decErr == nil && schErr != nil:
			t.Errorf("%q: DecodeCommand accepts it, the schema refuses it: %v", payload, schErr)
		case decErr != nil && schErr == nil && !inexpressible:
			t.Errorf("%q: DecodeCommand refuses it (%v), the schema accepts it", payload, decErr)
		case decErr == nil && inexpressible:
			t.Errorf("%q: marked inexpressible, but DecodeCommand accepts it", payload)
		}
	}

	tests := []struct {
		payload       string
		inexpressible bool // duplicate keys, size, trailing data, invalid UTF-8
	}{
		{payload: `{"instanceId":"i-YufwpQAe"}`},
		{payload: ` {"instanceId":"i-YufwpQAe","forceStop":true} `},
		{payload: `{"region":"gz","commandId":"job-7.a=b","stopWithNoCharge":true,"forceStop":false,"instanceId":"i-a_b-C9"}`},
		{payload: `{"instanceId":"i-\u0059ufwpQAe"}`},
		{payload: `{}`},
		{payload: `[]`},
		{payload: `null`},
		{payload: `"i-YufwpQAe"`},
		{payload: `{"instanceId":"i-\ud800"}`},
		{payload: `{"instanceId":"i-abc\u0000"}`},
		{payload: `{"instanceId":"i-../../v2/instance/i-x?start"}`},
		{payload: `{"instanceId":"i-abc","forceStop":1e400}`},
		{payload: `{"instanceId":"i-abc","forceStop":-0.0000000000000000000000001}`},
		{payload: `{"instanceId":"i-abc","INSTANCEID":"i-def"}`},
		{payload: `{"instanceId":"i-abc","__proto__":{}}`},
		{payload: `{"instanceId":"i-abc","region":"bj\n"}`},
		{payload: `{"instanceId":null,"forceStop":null}`},
		{payload: `{"instanceId":{"a":[[[[1]]]]}}`},
		{payload: `{"instanceId":"i-abc","instanceId":"i-def"}`, inexpressible: true},
		{payload: `{"instanceId":"i-abc","forceStop":true,"forceStop":true}`, inexpressible: true},
		{payload: `{"instanceId":"i-abc"}{"instanceId":"i-def"}`, inexpressible: true},
		{payload: `{"instanceId":"i-abc"} x`, inexpressible: true},
		{payload: "{\"instanceId\":\"i-abc\",\"commandId\":\"j\xff\"}", inexpressible: true},
		{payload: `{"instanceId":"i-abc","message":"` + strings.Repeat("x", messages.MaxCommandBytes) + `"}`},
		{payload: `{"instanceId":"i-abc",` + strings.Repeat(" ", messages.MaxCommandBytes) + `"forceStop":true}`, inexpressible: true},
	}
	for _, tc := range tests {
		check(t, []byte(tc.payload), tc.inexpressible)
	}

	// Objects built from a valid command (the first value of each field;
	// nil means absent) with up to three fields changed to other values,
	// wrong types and absence included, in every combination: thousands of
	// payloads differing in data only.
	str := func(s string) *string { b, _ := json.Marshal(s); v := string(b); return &v }
	lit := func(s string) *string { return &s }
	fields := []struct {
		name   string
		values []*string
	}{
		{"instanceId", []*string{str("i-YufwpQAe"), nil, str("i-a"), str("i-" + strings.Repeat("Z", 62)), str("i-" + strings.Repeat("Z", 63)),
			str(""), str("i-"), str("vm-abc"), str("I-abc"), str("i-a.b"), str("i-a b"), str("i-é"), lit("42"), lit("null"), lit("[]")}},
		{"forceStop", []*string{nil, lit("true"), lit("false"), str("true"), lit("0"), lit("null")}},
		{"stopWithNoCharge", []*string{nil, lit("true"), lit("false"), str("false"), lit("{}")}},
		{"commandId", []*string{nil, str("job-42"), str("="), str("_a.b"), str(strings.Repeat("c", 128)), str(strings.Repeat("c", 129)),
			str(""), str(".hidden"), str("a b"), str("a/b"), str("ü"), lit("7")}},
		{"region", []*string{nil, str("gz"), str("bj-2"), str(strings.Repeat("r", 32)), str(strings.Repeat("r", 33)), str(""), str("BJ"),
			str("g_z"), lit("false")}},
		{"notAfter", []*string{nil, str("2026-11-29T18:00:00Z"), str("2026-11-29T18:00:00.123+08:00"), str("2026-11-29 18:00:00Z"),
			str("2026-11-29T18:00:00"), str("tomorrow"), str(""), lit("1764406800")}},
		{"waitUntilStopped", []*string{nil, lit("true"), lit("false"), str("true"), lit("null")}},
		{"reason", []*string{nil, str("INC-4711: web-3"), str(""), str(strings.Repeat("é", 512)), str(strings.Repeat("é", 513)),
			str("a\nb"), str("tab\there"), str("\u001b[2J"), str("\u202eevil"), lit("7")}},
		{"requestedBy", []*string{nil, str("alice@host"), str(strings.Repeat("x", 128)), str(strings.Repeat("x", 129)), str("a\u0000"), lit("[]")}},
		{"force", []*string{nil, lit("true")}},
	}
	const maxChanged = 3
	count := 0
	var walk func(i, changed int, members []string)
	walk = func(i, changed int, members []string) {
		if i == len(fields) {
			count++
			check(t, []byte("{"+strings.Join(members, ",")+"}"), false)
			return
		}
		for j, v := range fields[i].values {
			c := changed
			if j > 0 {
				c++
			}
			switch {
			case c > maxChanged:
			case v == nil:
				walk(i+1, c, members)
			default:
				walk(i+1, c, append(slices.Clip(members), fmt.Sprintf("%q:%s", fields[i].name, *v)))
			}
		}
	}
	walk(0, 0, nil)
	t.Logf("%d generated payloads agree", count)
}

// asyncAPI reads asyncapi.yaml as JSON-compatible values.
func asyncAPI(t *testing.T) (map[string]any, []byte) {
	t.Helper()
	raw, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	return doc, js
}

// lookup follows a JSON pointer (without the leading "#") through doc.
func lookup(doc any, pointer string) (any, bool) {
	cur := doc
	for _, tok := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func stringAt(doc any, pointer string) string {
	v, _ := lookup(doc, pointer)
	s, _ := v.(string)
	return s
}

func TestAsyncAPIDocument(t *testing.T) {
	doc, _ := asyncAPI(t)
	if got := stringAt(doc, "/asyncapi"); got != "3.0.0" {
		t.Errorf("asyncapi = %q, want 3.0.0", got)
	}
	for _, p := range []string{"/info/title", "/info/version", "/info/description"} {
		if stringAt(doc, p) == "" {
			t.Errorf("%s is missing", p)
		}
	}
	if got := stringAt(doc, "/servers/dev/protocol"); got != "nats" {
		t.Errorf("servers.dev.protocol = %q, want nats", got)
	}
	if got := stringAt(doc, "/channels/stopCommands/address"); got != messages.CommandSubject {
		t.Errorf("stopCommands address %q, want %q", got, messages.CommandSubject)
	}
	if got, want := stringAt(doc, "/channels/stopResults/address"), messages.ResultSubjectPrefix+"{outcome}"; got != want {
		t.Errorf("stopResults address %q, want %q", got, want)
	}
	enum, _ := lookup(doc, "/channels/stopResults/parameters/outcome/enum")
	var outcomes []any
	for _, o := range messages.Outcomes {
		outcomes = append(outcomes, string(o))
	}
	if !reflect.DeepEqual(enum, outcomes) {
		t.Errorf("outcome parameter enum %v, want %v", enum, outcomes)
	}
	if got, want := stringAt(doc, "/channels/controlEvents/address"), messages.ControlSubjectPrefix+"{action}"; got != want {
		t.Errorf("controlEvents address %q, want %q", got, want)
	}
	for op, want := range map[string][2]string{
		"receiveStopCommand": {"receive", "#/channels/stopCommands"},
		"sendStopResult":     {"send", "#/channels/stopResults"},
		"sendControlEvent":   {"send", "#/channels/controlEvents"},
	} {
		if got := stringAt(doc, "/operations/"+op+"/action"); got != want[0] {
			t.Errorf("%s action %q, want %q", op, got, want[0])
		}
		if got := stringAt(doc, "/operations/"+op+"/channel/$ref"); got != want[1] {
			t.Errorf("%s channel %q, want %q", op, got, want[1])
		}
	}

	// Every reference resolves: ./schema/ files to messages.Schemas, local
	// ones within the document.
	var refs []string
	var collect func(v any)
	collect = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs = append(refs, ref)
			}
			for _, e := range v {
				collect(e)
			}
		case []any:
			for _, e := range v {
				collect(e)
			}
		}
	}
	collect(doc)
	schemaRefs := 0
	for _, ref := range refs {
		switch {
		case strings.HasPrefix(ref, "./schema/"):
			schemaRefs++
			name, _, _ := strings.Cut(strings.TrimPrefix(ref, "./"), "#")
			if _, err := fs.Stat(messages.Schemas, name); err != nil {
				t.Errorf("$ref %s: %v", ref, err)
			}
		case strings.HasPrefix(ref, "#/"):
			if _, ok := lookup(doc, strings.TrimPrefix(ref, "#")); !ok {
				t.Errorf("$ref %s does not resolve", ref)
			}
		default:
			t.Errorf("$ref %s is neither local nor ./schema/", ref)
		}
	}
	if schemaRefs < 4 {
		t.Errorf("only %d references to ./schema/ files", schemaRefs)
	}
}

// asyncAPIMessageSchemas returns a compiler of message payload and headers schemas from
// asyncapi.yaml itself; its ./schema/ references resolve to messages.Schemas.
func asyncAPIMessageSchemas(t *testing.T) func(message, part string) *jsonschema.Schema {
	t.Helper()
	_, js := asyncAPI(t)
	c := newCompiler(t)
	generic, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	const docURL = schemaBase + "asyncapi.yaml"
	if err := c.AddResource(docURL, generic); err != nil {
		t.Fatal(err)
	}
	return func(message, part string) *jsonschema.Schema {
		t.Helper()
		sch, err := c.Compile(docURL + "#/components/messages/" + message + "/" + part)
		if err != nil {
			t.Fatalf("compile %s %s: %v", message, part, err)
		}
		return sch
	}
}

// TestAsyncAPIExamplesValidate checks each message example of asyncapi.yaml
// against the message's payload and headers schemas.
func TestAsyncAPIExamplesValidate(t *testing.T) {
	doc, _ := asyncAPI(t)
	compile := asyncAPIMessageSchemas(t)
	msgs, _ := lookup(doc, "/components/messages")
	if len(msgs.(map[string]any)) != 5 {
		t.Errorf("components.messages has %d messages, want 5", len(msgs.(map[string]any)))
	}
	for name, m := range msgs.(map[string]any) {
		examples, _ := m.(map[string]any)["examples"].([]any)
		if len(examples) == 0 {
			t.Errorf("message %s has no examples", name)
		}
		for _, part := range []string{"payload", "headers"} {
			if _, ok := m.(map[string]any)[part]; !ok {
				continue
			}
			sch := compile(name, part)
			for i, ex := range examples {
				v, ok := ex.(map[string]any)[part]
				if !ok {
					continue
				}
				if err := validate(sch, mustMarshal(t, v)); err != nil {
					t.Errorf("message %s example %d %s: %v", name, i, part, err)
				}
			}
		}
	}
}

// TestCloudEventSchemaAgreesWithDecoder checks DecodeCommandMessage on
// structured CloudEvents against command-cloudevent.schema.json, as
// TestCommandSchemaAgreesWithDecoder does for plain commands. Where the
// schema is deliberately stricter than the worker (marked stricter), only
// the schema's refusal is checked.
func TestCloudEventSchemaAgreesWithDecoder(t *testing.T) {
	s := compileSchemas(t)
	check := func(t *testing.T, payload []byte, inexpressible, stricter bool) {
		t.Helper()
		_, env, decErr := messages.DecodeCommandMessage(payload, nil)
		schErr := validate(s.commandCE, payload)
		switch {
		case stricter:
			if schErr == nil {
				t.Errorf("%s: the schema accepts it", payload)
			}
		case decErr == nil && env.Mode != messages.ModeStructured:
			t.Errorf("%s: decoded as %s, not as a structured CloudEvent", payload, env.Mode)
		case decErr == nil && schErr != nil:
			t.Errorf("%s: DecodeCommandMessage accepts it, the schema refuses it: %v", payload, schErr)
		case decErr != nil && schErr == nil && !inexpressible:
			t.Errorf("%s: DecodeCommandMessage refuses it (%v), the schema accepts it", payload, decErr)
		}
	}
	ce := func(members string) []byte {
		return []byte(`{"specversion":"1.0","id":"ev-1","source":"//tests","type":"bcc.instance.stop",` + members + `}`)
	}
	for _, tc := range []struct {
		payload                 []byte
		inexpressible, stricter bool
	}{
		{payload: ce(`"data":{"instanceId":"i-YufwpQAe"}`)},
		{payload: ce(`"knativearrivaltime":"2026-11-26T00:00:00Z","priority":3,"sampled":true,"unset":null,"data":{"instanceId":"i-a"}`)},
		{payload: ce(`"data":{"instanceId":"i-a","instanceId":"i-b"}`), inexpressible: true},
		{payload: ce(`"id":"ev-2","data":{"instanceId":"i-a"}`), inexpressible: true},
		{payload: append(ce(`"data":{"instanceId":"i-a"}`), " x"...), inexpressible: true},
		{payload: ce(`"data":{"instanceId":"i-a"},"pad":"` + strings.Repeat("x", messages.MaxCommandBytes) + `"`), inexpressible: true},
		{payload: ce(`"datacontenttype":"","data":{"instanceId":"i-a"}`)},
		{payload: ce(`"datacontenttype":"Application/JSON","data":{"instanceId":"i-a"}`), stricter: true},
		{payload: ce(`"datacontenttype":"application/cloudevents+json","data":{"instanceId":"i-a"}`)},
	} {
		check(t, tc.payload, tc.inexpressible, tc.stricter)
	}

	// A valid event (the first value of each member; nil means absent) with
	// up to three members changed, in every combination.
	fields := []struct {
		name   string
		values []string // raw JSON; "" means absent
	}{
		{"specversion", []string{`"1.0"`, "", `"0.3"`, `1.0`, `null`}},
		{"id", []string{`"ev-1"`, "", `""`, `"` + strings.Repeat("é", 128) + `"`, `"` + strings.Repeat("e", 129) + `"`, `"a\u0007"`, `7`}},
		{"source", []string{`"//tests"`, "", `""`, `"` + strings.Repeat("s", 128) + `"`, `"` + strings.Repeat("s", 129) + `"`, `"s\n"`, `true`}},
		{"type", []string{`"bcc.instance.stop"`, "", `""`, `"com.example.stop"`}},
		{"datacontenttype", []string{"", `"application/json"`, `"application/json; charset=utf-8"`, `"text/plain"`, `1`}},
		{"data", []string{`{"instanceId":"i-YufwpQAe"}`, "", `null`, `{"instanceId":"vm-1"}`, `{"instanceId":"i-a","x":1}`, `"i-a"`,
			`{"instanceId":"i-a","forceStop":"true"}`, `{"instanceId":"i-a","commandId":"job-1","region":"gz"}`}},
		{"time", []string{"", `"2026-11-26T00:00:00Z"`, `5`, `null`}},
		{"ext", []string{"", `"v"`, `3`, `null`, `{}`, `[1]`}},
		{"Ext", []string{"", `1`}},
		{"data_base64", []string{"", `"e30="`}},
		{"abcdefghijklmnopqrstu", []string{"", `1`}},
	}
	const maxChanged = 3
	count := 0
	var walk func(i, changed int, members []string)
	walk = func(i, changed int, members []string) {
		if i == len(fields) {
			count++
			check(t, []byte("{"+strings.Join(members, ",")+"}"), false, false)
			return
		}
		for j, v := range fields[i].values {
			c := changed
			if j > 0 {
				c++
			}
			switch {
			case c > maxChanged:
			case v == "":
				walk(i+1, c, members)
			default:
				walk(i+1, c, append(slices.Clip(members), fmt.Sprintf("%q:%s", fields[i].name, v)))
			}
		}
	}
	walk(0, 0, nil)
	t.Logf("%d generated events agree", count)
}

// TestBinaryCloudEventHeadersAgreeWithDecoder checks DecodeCommandMessage on
// binary-mode commands against the headers schema of asyncapi.yaml.
func TestBinaryCloudEventHeadersAgreeWithDecoder(t *testing.T) {
	headersSchema := asyncAPIMessageSchemas(t)("stopCommandCloudEventBinary", "headers")
	valid := map[string]string{"ce-specversion": "1.0", "ce-id": "ev-1", "ce-source": "//tests", "ce-type": "bcc.instance.stop"}
	for _, tc := range []struct {
		name   string
		change func(h map[string]string)
	}{
		{"minimal", func(map[string]string) {}},
		{"with content type and tracing", func(h map[string]string) {
			h["Content-Type"], h["Nats-Msg-Id"] = "application/json", "m-1"
			h["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		}},
		{"charset", func(h map[string]string) { h["Content-Type"] = "application/json; charset=utf-8" }},
		{"other spec version", func(h map[string]string) { h["ce-specversion"] = "0.3" }},
		{"no id", func(h map[string]string) { delete(h, "ce-id") }},
		{"long id", func(h map[string]string) { h["ce-id"] = strings.Repeat("e", 129) }},
		{"longest id", func(h map[string]string) { h["ce-id"] = strings.Repeat("é", 128) }},
		{"long source", func(h map[string]string) { h["ce-source"] = strings.Repeat("s", 129) }},
		{"unprintable id", func(h map[string]string) { h["ce-id"] = "ev\x1b[31m" }},
		{"unprintable source", func(h map[string]string) { h["ce-source"] = "s\u200b" }},
		{"no source", func(h map[string]string) { delete(h, "ce-source") }},
		{"empty type", func(h map[string]string) { h["ce-type"] = "" }},
		{"text data", func(h map[string]string) { h["Content-Type"] = "text/plain" }},
		{"structured content type", func(h map[string]string) { h["Content-Type"] = "application/cloudevents+json" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := maps.Clone(valid)
			tc.change(h)
			lookupHeader := func(name string) string {
				for k, v := range h {
					if strings.EqualFold(k, name) {
						return v
					}
				}
				return ""
			}
			_, env, decErr := messages.DecodeCommandMessage([]byte(`{"instanceId":"i-YufwpQAe"}`), lookupHeader)
			schErr := validate(headersSchema, mustMarshal(t, h))
			switch {
			case decErr == nil && env.Mode != messages.ModeBinary:
				t.Errorf("%v: decoded as %s, not binary", h, env.Mode)
			case decErr == nil && schErr != nil:
				t.Errorf("%v: DecodeCommandMessage accepts it, the headers schema refuses it: %v", h, schErr)
			case decErr != nil && schErr == nil:
				t.Errorf("%v: DecodeCommandMessage refuses it (%v), the headers schema accepts it", h, decErr)
			}
		})
	}
}
