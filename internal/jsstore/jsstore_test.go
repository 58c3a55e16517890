package jsstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/internal/testenv"
)

// TestBucketWorksAsKeyValueAndRefusesRollups: a bucket made from
// BucketStream is a working KeyValue bucket (create, update, delete, per-key
// TTL, watch), and a writer of one key cannot erase the others with a
// roll-up, nor purge the bucket.
func TestBucketWorksAsKeyValueAndRefusesRollups(t *testing.T) {
	srv := testenv.NATS(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jsstore.BucketStream(jsstore.BucketOptions{Bucket: "things", PerKeyTTL: true})); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "things")
	if err != nil {
		t.Fatal(err)
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	if _, err := kv.Create(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "b", []byte("2"), jetstream.KeyTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "b", []byte("3"), rev); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "a", []byte("again")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second create of a: %v", err)
	}
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "a", []byte("4")); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: jsstore.SubjectPrefix("things") + "c", Data: []byte("x"), Header: nats.Header{"Nats-Rollup": {"all"}}})
	if err == nil {
		t.Fatal("a roll-up was accepted")
	}
	st, _ := js.Stream(ctx, jsstore.StreamName("things"))
	if err := st.Purge(ctx); err == nil {
		t.Fatal("a purge was accepted")
	}
	if e, err := kv.Get(ctx, "a"); err != nil || string(e.Value()) != "4" {
		t.Fatalf("a after the roll-up and purge attempts: %v %v", e, err)
	}
	seen := map[string]string{}
	for len(seen) < 2 {
		select {
		case e := <-watch.Updates():
			if e != nil {
				seen[e.Key()] = string(e.Value())
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %v", seen)
		}
	}
}
