package messages_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/messages"
)

func TestIdentityOrder(t *testing.T) {
	ce := messages.Envelope{Mode: messages.ModeStructured, EventID: "evt-81", Source: "/alerts"}
	tests := []struct {
		name  string
		cmdID string
		env   messages.Envelope
		msgID string
		want  string
	}{
		{"commandId first", "c1", ce, "m1", "c1"},
		{"CloudEvent source and id before Nats-Msg-Id", "", ce, "m1", "/alerts#evt-81"},
		{"Nats-Msg-Id", "", messages.Envelope{Mode: messages.ModePlain}, "m1", "m1"},
		{"none: the worker derives one", "", messages.Envelope{Mode: messages.ModePlain}, "", ""},
		{"a '#' in the source cannot fake another pair", "", messages.Envelope{Mode: messages.ModeBinary, EventID: "x", Source: "a#b"}, "", "a%23b#x"},
		{"header of exactly 128 characters", "", messages.Envelope{}, strings.Repeat("é", 128), strings.Repeat("é", 128)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := messages.Identity(messages.StopCommand{CommandID: tc.cmdID}, tc.env, tc.msgID)
			if err != nil || got != tc.want {
				t.Fatalf("Identity = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// Two different (source, id) pairs never make the same identity.
func TestCloudEventIdentityIsUnambiguous(t *testing.T) {
	pairs := [][2]string{{"a#b", "c"}, {"a", "b#c"}, {"a%23b", "c"}, {"a", "%23b#c"}}
	seen := map[string][2]string{}
	for _, p := range pairs {
		id, err := messages.Identity(messages.StopCommand{}, messages.Envelope{Mode: messages.ModeStructured, Source: p[0], EventID: p[1]}, "")
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[id]; dup {
			t.Fatalf("%v and %v both give identity %q", prev, p, id)
		}
		seen[id] = p
	}
}

func TestIdentityFromAHeaderMustBeShortAndPrintable(t *testing.T) {
	tests := []struct {
		name  string
		env   messages.Envelope
		msgID string
		field string
	}{
		{"60 KiB Nats-Msg-Id", messages.Envelope{Mode: messages.ModePlain}, strings.Repeat("x", 60<<10), "Nats-Msg-Id"},
		{"129 characters", messages.Envelope{Mode: messages.ModePlain}, strings.Repeat("x", 129), "Nats-Msg-Id"},
		{"control character", messages.Envelope{Mode: messages.ModePlain}, "job\x1b[31m-1", "Nats-Msg-Id"},
		{"newline", messages.Envelope{Mode: messages.ModePlain}, "job\n-1", "Nats-Msg-Id"},
		{"invalid UTF-8", messages.Envelope{Mode: messages.ModePlain}, "job\xff", "Nats-Msg-Id"},
		{"long ce-id", messages.Envelope{Mode: messages.ModeBinary, EventID: strings.Repeat("e", 200), Source: "s"}, "", "ce-id"},
		{"unprintable ce-source", messages.Envelope{Mode: messages.ModeBinary, EventID: "e", Source: "s\x00"}, "", "ce-source"},
		{"long structured id", messages.Envelope{Mode: messages.ModeStructured, EventID: strings.Repeat("e", 200), Source: "s"}, "", "id"},
		{"long structured source", messages.Envelope{Mode: messages.ModeStructured, EventID: "e", Source: strings.Repeat("s", 129)}, "", "source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := messages.Identity(messages.StopCommand{}, tc.env, tc.msgID)
			var inv *messages.InvalidCommandError
			if !errors.As(err, &inv) || inv.Field != tc.field || id != "" {
				t.Fatalf("Identity = %q, %v; want an InvalidCommandError naming %s", id, err, tc.field)
			}
			if len(err.Error()) > 200 || strings.ContainsAny(err.Error(), "\n\x00\x1b") {
				t.Fatalf("error is not one short printable line: %q", err)
			}
		})
	}
	// A valid commandId makes the header irrelevant: it is not the identity.
	if id, err := messages.Identity(messages.StopCommand{CommandID: "c1"}, messages.Envelope{}, strings.Repeat("x", 60<<10)); err != nil || id != "c1" {
		t.Fatalf("with a commandId: %q, %v", id, err)
	}
}

func TestFallbackIdentityNeverRepeats(t *testing.T) {
	stored := time.Date(2026, 11, 29, 15, 40, 12, 123456789, time.UTC)
	a := messages.FallbackIdentity("BCCSTOP_COMMANDS", 42, stored)
	if a != messages.FallbackIdentity("BCCSTOP_COMMANDS", 42, stored) {
		t.Fatal("not stable across redeliveries of the same stored message")
	}
	// The stream deleted and re-created: sequence 42 comes back, later.
	if b := messages.FallbackIdentity("BCCSTOP_COMMANDS", 42, stored.Add(time.Nanosecond)); a == b {
		t.Fatalf("a re-created stream's message 42 reuses identity %q", a)
	}
	if !messages.ValidCommandID(a) {
		t.Fatalf("fallback identity %q is not usable as a commandId", a)
	}
}

func TestContentAndFingerprint(t *testing.T) {
	base := messages.StopCommand{InstanceID: "i-a", CommandID: "job-1"}
	same := []messages.StopCommand{
		base,
		{InstanceID: "i-a", CommandID: "job-1", Reason: "INC-7", RequestedBy: "alice@host"},
		{InstanceID: "i-a", CommandID: "other-id"},
	}
	for _, c := range same {
		if c.Fingerprint() != base.Fingerprint() {
			t.Errorf("%+v: fingerprint differs from %+v, but only audit fields or the id changed", c, base)
		}
	}
	notAfter := messages.StopCommand{InstanceID: "i-a", NotAfter: "2026-11-29T10:00:00+01:00"}
	notAfterUTC := messages.StopCommand{InstanceID: "i-a", NotAfter: "2026-11-29T09:00:00Z"}
	if notAfter.Fingerprint() != notAfterUTC.Fingerprint() {
		t.Error("the same instant written in two zones is different content")
	}
	differ := []messages.StopCommand{
		{InstanceID: "i-b"},
		{InstanceID: "i-a", ForceStop: true},
		{InstanceID: "i-a", StopWithNoCharge: true},
		{InstanceID: "i-a", Region: "gz"},
		notAfterUTC,
		{InstanceID: "i-a", WaitUntilStopped: true},
	}
	seen := map[string]string{base.Fingerprint(): base.Content()}
	for _, c := range differ {
		fp := c.Fingerprint()
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s and %s have the same fingerprint", prev, c.Content())
		}
		seen[fp] = c.Content()
	}
	if got := (messages.StopCommand{InstanceID: "i-a", ForceStop: true}).Content(); !strings.Contains(got, "instanceId=i-a") || !strings.Contains(got, "forceStop=true") {
		t.Errorf("Content() = %q; it should read as the fields it compares", got)
	}
}

// A plain command whose commandId happens to be "specversion" is still a
// plain command, not a CloudEvent.
func TestPlainCommandMentioningSpecversion(t *testing.T) {
	for _, payload := range []string{
		`{"instanceId":"i-a","commandId":"specversion"}`,
		`{"commandId":"specversion","instanceId":"i-a"}`,
		`{"instanceId":"i-a","reason":"the \"specversion\" field"}`,
	} {
		cmd, env, err := messages.DecodeCommandMessage([]byte(payload), nil)
		if err != nil || env.Mode != messages.ModePlain || cmd.InstanceID != "i-a" {
			t.Errorf("%s: %+v %+v %v", payload, cmd, env, err)
		}
	}
}
