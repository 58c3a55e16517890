package worker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// TestCredentialRefusalOfALookHandsBack: the credentials stop working
// (the worker's clock off by an hour) after a stop went through, while its
// command looks at the instance: waiting for Stopped, or reconciling a
// stop whose answer failed. The look's refusal is the worker's fault, not
// the command's: no result, the worker says it is not ready, and once the
// credentials work again the command ends as it would have, with its one
// stop call.
func TestCredentialRefusalOfALookHandsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fields  string
		faults  fakebcc.Faults // of the stop call
		outcome messages.Outcome
		status  string // the instance's status once the credentials work
	}{
		{"waiting for Stopped", `,"waitUntilStopped":true`, fakebcc.Faults{}, messages.Succeeded, fakebcc.Stopped},
		{"reconciling a stop whose answer failed", "", fakebcc.Faults{Rate: 1, Kinds: []int{500}, AfterApply: 1}, messages.Succeeded, fakebcc.Stopping},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const instance = "i-looks-refused"
			h := newHarness(t, nil)
			w := h.startWorker(func(o *worker.Options) {
				o.StopWaitIntervals, o.StopWaitTimeout = []time.Duration{100 * time.Millisecond}, time.Minute
				o.Backoff = []time.Duration{time.Second} // the look comes after the skew is set
			})
			h.results = testenv.ReadResults(t, h.js, "BCCSTOP_RESULTS")
			h.sim.SetStatus(instance, fakebcc.Running)
			h.sim.SetFaults(tc.faults)
			h.publish(`{"commandId":"looks-1","instanceId":"i-looks-refused"`+tc.fields+`}`, nil)
			testenv.Eventually(t, 10*time.Second, "the stop to take effect", func() bool { return h.sim.Stats().StopsApplied == 1 })
			h.sim.SetFaults(fakebcc.Faults{})
			h.sim.SetClockSkew(time.Hour)
			testenv.Eventually(t, 10*time.Second, "the worker to say its credentials are refused", func() bool {
				err := w.Ready()
				return err != nil && strings.Contains(err.Error(), "RequestExpired")
			})
			time.Sleep(500 * time.Millisecond)
			if n := len(h.results.All()); n != 0 {
				t.Fatalf("%d results while the credentials are refused", n)
			}
			if tc.status == fakebcc.Stopped {
				h.sim.SetStatus(instance, fakebcc.Stopped)
			}
			h.sim.SetClockSkew(0)
			d := h.wait("looks-1")["looks-1"].Event.Data
			if d.Outcome != tc.outcome || d.InstanceStatus != tc.status {
				t.Errorf("%s %s, instanceStatus %q (%s); want %s, %s", d.Outcome, d.Code, d.InstanceStatus, d.Message, tc.outcome, tc.status)
			}
			if n := h.sim.StopCalls(instance); n != 1 {
				t.Errorf("%d stop calls, want 1", n)
			}
			if err := w.Ready(); err != nil {
				t.Errorf("not ready once the credentials work: %v", err)
			}
		})
	}
}
