package tests

// Issue 20: every documented answer of the BCC API, through the binary:
// what the worker makes of it (outcome, code, retried or not) and the
// calls it cost, counted by the simulator.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// TestEveryAnswerThroughTheBinary: one worker, one command per documented
// answer (each on an instance of its own, set up in the simulator), and
// per command: the result's outcome and code, its attempts (1: not
// retried), and the stop and describe calls the simulator served for it.
func TestEveryAnswerThroughTheBinary(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: 300 * time.Millisecond})
	addr := freeAddr(t)
	start(t, workerEnv(t, srv.ClientURL(), simURL, addr, "BCCSTOP_MAX_DELIVER=3", "BCCSTOP_BACKOFF=100ms",
		"BCCSTOP_STOP_WAIT_INTERVALS=200ms", "BCCSTOP_LOG_LEVEL=warn"), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 30*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")

	running := func(attrs fakebcc.Attributes) func(*fakebcc.Server, string) {
		return func(s *fakebcc.Server, id string) {
			s.SetStatus(id, fakebcc.Running)
			if err := s.SetAttributes(id, attrs); err != nil {
				t.Fatal(err)
			}
		}
	}
	failing := func(status int, code string, times int) func(*fakebcc.Server, string) {
		return func(s *fakebcc.Server, id string) {
			s.SetStatus(id, fakebcc.Running)
			s.FailInstanceTimes(id, status, code, times)
		}
	}
	// waits stands for the looks of a command waiting for Stopped: one
	// or more (the instance is Stopping for 300 ms, looked at every
	// 200 ms), each a delivery of its own after the stop's.
	const waits = -1
	cases := []struct {
		name    string
		setup   func(*fakebcc.Server, string) // nil: no such instance
		fields  string                        // more command fields
		outcome messages.Outcome
		code    string
		// attempts is the result's attempts: 1 when the answer is not
		// retried. stops and describes are the calls the simulator served
		// for the instance (a batch describe naming it counts as one).
		attempts, stops, describes int
		message                    string // in the result's message (or its lastCode), if not ""
		applied                    int    // stop calls that took effect
	}{
		{"200: stopped", running(fakebcc.Attributes{}), "", messages.Succeeded, "", 1, 1, 0, "", 1},
		{"200, waiting until Stopped", running(fakebcc.Attributes{}), `,"waitUntilStopped":true`, messages.Succeeded, "", waits, 1, waits, "", 1},
		{"409: not Running", func(s *fakebcc.Server, id string) { s.SetStatus(id, fakebcc.Stopped) }, "",
			messages.Forbidden, "Instance.StopInstanceOperationForbidden", 1, 1, 0, "", 0},
		{"404: no such instance", nil, "", messages.Failed, "NoSuchObject", 1, 1, 0, "", 0},
		{"403: prepaid, stopWithNoCharge", running(fakebcc.Attributes{Prepaid: true}), `,"stopWithNoCharge":true`,
			messages.Failed, "Bcc.PrePayCannotStopWithNoCharge", 1, 1, 0, "without stopWithNoCharge", 0},
		{"403: local disks, stopWithNoCharge", running(fakebcc.Attributes{LocalDisk: true}), `,"stopWithNoCharge":true`,
			messages.Failed, "Bcc.Rocv1CannotStopWithNoCharge", 1, 1, 0, "without stopWithNoCharge", 0},
		{"403: type without no-charge stop", running(fakebcc.Attributes{NoChargeUnsupported: true}), `,"stopWithNoCharge":true`,
			messages.Failed, "Bcc.InstanceTypeNotSupportException", 1, 1, 0, "without stopWithNoCharge", 0},
		{"prepaid, a plain stop", running(fakebcc.Attributes{Prepaid: true}), "", messages.Succeeded, "", 1, 1, 0, "", 1},
		{"403: access denied", running(fakebcc.Attributes{Denied: true}), "", messages.Failed, "AccessDenied", 1, 1, 0, "", 0},
		{"400: MalformedJSON", failing(400, "MalformedJSON", -1), "", messages.Failed, "MalformedJSON", 1, 1, 0, "", 0},
		{"400: InappropriateJSON", failing(400, "InappropriateJSON", -1), "", messages.Failed, "InappropriateJSON", 1, 1, 0, "", 0},
		// 429 is known not to have been applied: tried again with no look
		// first. A 503 may come from a gateway after the service acted,
		// so, as a 500, its retry looks first.
		{"429 once", failing(429, "RequestLimitExceeded", 1), "", messages.Succeeded, "", 2, 2, 0, "", 1},
		{"503 once", failing(503, "ServiceUnavailable", 1), "", messages.Succeeded, "", 2, 2, 1, "", 1},
		// A 500 may have been applied: the retry looks first.
		{"500 once", failing(500, "InternalError", 1), "", messages.Succeeded, "", 2, 2, 1, "", 1},
		{"500 every time", failing(500, "InternalError", -1), "", messages.Failed, messages.CodeRetriesExhausted, 3, 3, 3, "InternalError", 0},
	}
	ids := map[string]string{} // case → command id
	for i, tc := range cases {
		inst, id := fmt.Sprintf("i-answer%02d", i), fmt.Sprintf("answer-%02d", i)
		ids[tc.name] = id
		if tc.setup != nil {
			tc.setup(sim, inst)
		}
		publishCommand(t, js, fmt.Sprintf(`{"commandId":%q,"instanceId":%q%s}`, id, inst, tc.fields))
	}
	var all []string
	for _, id := range ids {
		all = append(all, id)
	}
	got := results.Wait(t, 60*time.Second, all...)
	history, applied := sim.History(), sim.AppliedStops()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := fmt.Sprintf("i-answer%02d", i)
			d := got[ids[tc.name]].Event.Data
			if d.Outcome != tc.outcome || d.Code != tc.code {
				t.Errorf("%s %q (%s), want %s %q", d.Outcome, d.Code, d.Message, tc.outcome, tc.code)
			}
			if tc.attempts != waits && d.Attempts != tc.attempts {
				t.Errorf("%d attempts, want %d", d.Attempts, tc.attempts)
			}
			if tc.message != "" && !strings.Contains(d.Message, tc.message) && d.LastCode != tc.message {
				t.Errorf("message %q (last code %q) does not say %q", d.Message, d.LastCode, tc.message)
			}
			stops, describes := 0, 0
			for _, c := range history {
				switch {
				case c.Op == fakebcc.OpStop && c.Instance == inst:
					stops++
				case c.Op == fakebcc.OpDescribe && c.Instance == inst:
					describes++
				case c.Op == fakebcc.OpDescribeBatch:
					for _, n := range c.Instances {
						if n == inst {
							describes++
						}
					}
				}
			}
			if tc.describes == waits {
				if describes < 1 || describes > 3 || d.Attempts != describes+1 || d.InstanceStatus != fakebcc.Stopped || d.StoppedAt == "" {
					t.Errorf("%d describes, %d attempts, instanceStatus %q, stoppedAt %q; want 1 to 3 looks, a delivery each after the stop's, and Stopped",
						describes, d.Attempts, d.InstanceStatus, d.StoppedAt)
				}
				tc.describes = describes
			}
			if stops != tc.stops || describes != tc.describes {
				t.Errorf("%d stop and %d describe calls, want %d and %d", stops, describes, tc.stops, tc.describes)
			}
			if n := applied[inst]; n != tc.applied {
				t.Errorf("%d stops took effect, want %d", n, tc.applied)
			}
		})
	}
}

// publishCommand stores one command on the commands subject.
func publishCommand(t *testing.T, js jetstream.JetStream, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, messages.CommandSubject, []byte(body)); err != nil {
		t.Fatalf("publish %s: %v", body, err)
	}
}

// TestWaitingCommandsNeverStarveNewOnes: a full commands stream of
// commands waiting for Stopped (instances Stopping for an hour) holds as
// many ack-pending slots; an incident's command published then is
// delivered and answered at once. Before BCCSTOP_MAX_ACK_PENDING was tied
// to BCCSTOP_COMMANDS_MAX_MSGS, 20,000 waiting commands held every slot
// and a new one waited for one of them to end, up to the wait's timeout.
func TestWaitingCommandsNeverStarveNewOnes(t *testing.T) {
	t.Parallel()
	const waiting = 1999 // the stream holds 2000
	srv := testenv.NATS(t)
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	addr := freeAddr(t)
	start(t, workerEnv(t, srv.ClientURL(), simURL, addr, "BCCSTOP_COMMANDS_MAX_MSGS=2000", "BCCSTOP_CONCURRENCY=64",
		"BCCSTOP_STOP_WAIT_INTERVALS=1s", "BCCSTOP_LOG_LEVEL=warn"), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 30*time.Second)
	_, js := testenv.Connect(t, srv.ClientURL())
	results := testenv.ReadResults(t, js, "BCCSTOP_RESULTS")
	for i := range waiting {
		inst := fmt.Sprintf("i-waiting%04d", i)
		sim.SetStatus(inst, fakebcc.Running)
		if _, err := js.PublishAsync(messages.CommandSubject, []byte(fmt.Sprintf(`{"commandId":"waiting-%d","instanceId":%q,"waitUntilStopped":true}`, i, inst))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting commands were not stored")
	}
	testenv.Eventually(t, 60*time.Second, "every waiting command's stop", func() bool { return sim.Stats().StopsApplied == waiting })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, "BCCSTOP_COMMANDS_V2", "bccstop-worker")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending < waiting || info.Config.MaxAckPending < 2000 {
		t.Fatalf("%d commands ack-pending (MaxAckPending %d); want the %d waiting ones to hold their slots, and room for the stream's 2000",
			info.NumAckPending, info.Config.MaxAckPending, waiting)
	}

	sim.SetStatus("i-incident", fakebcc.Running)
	published := time.Now()
	publishCommand(t, js, `{"commandId":"incident","instanceId":"i-incident"}`)
	d := results.Wait(t, 10*time.Second, "incident")["incident"]
	if d.Event.Data.Outcome != messages.Succeeded {
		t.Fatalf("incident: %s %s", d.Event.Data.Outcome, d.Event.Data.Code)
	}
	if took := time.Since(published); took > 5*time.Second {
		t.Errorf("the incident's command took %s behind %d waiting ones", took.Round(time.Millisecond), waiting)
	}
	if n := len(results.All()); n != 1 {
		t.Errorf("%d results; the waiting commands should still wait", n)
	}
}
