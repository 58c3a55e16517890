// Package jsstore builds the JetStream configurations of bccstop's own
// key-value buckets, so each is defined once and provisioned the same way.
//
// A bucket made by jetstream.CreateKeyValue allows roll-ups: anyone who may
// write one key can erase the whole bucket with a single message carrying
// "Nats-Rollup: all" (NATS permissions filter subjects, never headers). The
// buckets bccstop keeps (the ledger, the fleet's records, holds, the worker
// registry) are configured here without roll-ups and without purges, so a
// writer of a key can only change that key. They stay readable and writable
// with nats.go's KeyValue API (bind with JetStream.KeyValue): Get, Create,
// Update, Delete and watches work; Purge does not, and bccstop never uses it.
package jsstore

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketOptions describe one bucket.
type BucketOptions struct {
	// Bucket is the bucket's name; the stream is KV_<Bucket>.
	Bucket      string
	Description string
	// Replicas of the stream; 0 means 1.
	Replicas int
	// History is how many values per key are kept; 0 means 1.
	History int
	// PerKeyTTL allows a Nats-TTL header on writes (jetstream.KeyTTL on
	// Create, or a raw publish), so entries can expire one by one while the
	// others never do. It cannot be turned off again once on.
	PerKeyTTL bool
	// TTL, when positive, expires every entry that long after its last
	// write (the bucket-wide limit); 0 keeps entries until deleted or
	// their own TTL ends.
	TTL time.Duration
	// MaxBytes bounds the bucket; 0 means no limit.
	MaxBytes int64
	// MaxValueSize bounds one value; 0 means no limit.
	MaxValueSize int32
}

// StreamName is the name of the stream that holds bucket.
func StreamName(bucket string) string { return "KV_" + bucket }

// SubjectPrefix is the prefix of every key's subject in bucket: a write of
// key k is a message on SubjectPrefix(bucket)+k.
func SubjectPrefix(bucket string) string { return "$KV." + bucket + "." }

// BucketStream returns the stream configuration of a bucket: what
// jetstream.CreateKeyValue would make for the same options, except that
// roll-ups and purges are refused.
func BucketStream(o BucketOptions) jetstream.StreamConfig {
	history := int64(max(o.History, 1))
	replicas := max(o.Replicas, 1)
	maxBytes, maxValue := o.MaxBytes, o.MaxValueSize
	if maxBytes == 0 {
		maxBytes = -1
	}
	if maxValue == 0 {
		maxValue = -1
	}
	duplicates := 2 * time.Minute
	if o.TTL > 0 && o.TTL < duplicates {
		duplicates = o.TTL
	}
	return jetstream.StreamConfig{
		Name:              StreamName(o.Bucket),
		Description:       o.Description,
		Subjects:          []string{fmt.Sprintf("$KV.%s.>", o.Bucket)},
		MaxMsgsPerSubject: history,
		MaxBytes:          maxBytes,
		MaxAge:            o.TTL,
		MaxMsgSize:        maxValue,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       false,
		DenyDelete:        true,
		DenyPurge:         true,
		Duplicates:        duplicates,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
		AllowMsgTTL:       o.PerKeyTTL,
	}
}
