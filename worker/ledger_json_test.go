package worker

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestLedgerEntryJSON: the hand-written encoder of ledger entries writes
// what encoding/json writes, so entries read back the same whoever wrote
// them.
func TestLedgerEntryJSON(t *testing.T) {
	event := json.RawMessage(`{"specversion":"1.0","id":"x","data":{"commandId":"a\u003cb"}}`)
	for _, e := range []ledgerEntry{
		{State: stateAttempting, Owner: "w-1", Seq: 7, Delivery: 1, Fingerprint: "f00d", Content: "instanceId=i-a forceStop=false", Updated: time.Date(2026, 11, 29, 1, 2, 3, 4, time.UTC)},
		{State: stateRetrying, Owner: "w<2>&\"", Seq: 1 << 40, Delivery: 3, Calls: 2, Unsure: true, Charged: true, Updated: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)),
			LastStatus: 503, LastCode: "ServiceUnavailable", LastRequestID: "r-1"},
		{State: stateWaiting, Owner: "w", Updated: time.Now(), Wait: &waitState{Since: time.Now().UTC(), Describes: 2, Status: "Stopping"}},
		{State: stateDone, Owner: "w", Updated: time.Now(), Subject: "bcc.instance.stop.result.succeeded", Event: event},
	} {
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("appendJSON:\n%s\nMarshal:\n%s", got, want)
		}
	}
}
