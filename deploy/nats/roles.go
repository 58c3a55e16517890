// Package natsauth is bccstop's NATS authorization: the four roles of the
// contract (section 7), publisher, operator, observer and worker, each
// granted exactly the subjects its job needs, derived from the names in
// internal/layout and messages.
//
// The roles ship as permissions.conf (in this directory), a NATS server
// configuration fragment that defines one variable per role, for example
// BCCSTOP_PUBLISHER, to be given to users with "permissions: $BCCSTOP_PUBLISHER".
// nats-server.conf (Compose) includes it, the Kubernetes README shows how to
// load it into the NATS Helm chart, `bccstop dev --auth` loads it embedded
// (File), and the tests start real servers from the same file, so what is
// tested is what is deployed. Render builds the file from the code;
// TestPermissionsFileIsRendered keeps the two equal (run
// `go run ./deploy/nats/render` after changing a role).
package natsauth

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/messages"
)

// File is permissions.conf as shipped.
//
//go:embed permissions.conf
var File string

// Account is the NATS account the shipped configurations put bccstop's
// users in (KEDA's nats-jetstream trigger names it too).
const Account = "BCCSTOP"

// Role is one role's permissions.
type Role struct {
	// Name is the role ("publisher"); Variable the configuration variable
	// that holds its permissions ("BCCSTOP_PUBLISHER").
	Name, Variable string
	// Publish and Subscribe are the subjects the role may publish and
	// subscribe to; everything else is denied.
	Publish, Subscribe []string
}

// Role names.
const (
	Publisher = "publisher"
	Operator  = "operator"
	Observer  = "observer"
	Worker    = "worker"
)

// RoleNames lists the roles in the contract's order.
var RoleNames = []string{Publisher, Operator, Observer, Worker}

// api is the JetStream API subject of an action.
func api(action string) string { return "$JS.API." + action }

// readStream is what reading a stream with consumers of one's own takes:
// its info, creating, reading, acknowledging and deleting those consumers
// (ordered consumers delete theirs), fetching single messages.
func readStream(stream string) []string {
	return []string{
		api("STREAM.INFO." + stream),
		api("STREAM.MSG.GET." + stream),
		api("DIRECT.GET." + stream),
		api("DIRECT.GET." + stream + ".>"),
		api("CONSUMER.CREATE." + stream),
		api("CONSUMER.CREATE." + stream + ".>"),
		api("CONSUMER.DURABLE.CREATE." + stream + ".*"),
		api("CONSUMER.INFO." + stream + ".*"),
		api("CONSUMER.NAMES." + stream),
		api("CONSUMER.LIST." + stream),
		api("CONSUMER.MSG.NEXT." + stream + ".*"),
		api("CONSUMER.DELETE." + stream + ".*"),
		"$JS.ACK." + stream + ".>",
		"$JS.FC." + stream + ".>",
	}
}

// peek is reading single messages of a stream (and the values of a bucket,
// as KeyValue.Get does), with no consumer. Roles other than the worker get
// consumers only on the results and control streams: a push consumer
// delivers to any subject its creator names, whether or not the creator
// may publish there (nats-server issue 8274), so every consumer granted is
// a way to make the server write somewhere; see docs/operations.md.
func peek(stream string) []string {
	return []string{api("STREAM.INFO." + stream), api("STREAM.MSG.GET." + stream), api("DIRECT.GET." + stream), api("DIRECT.GET." + stream + ".>")}
}

// peekBucket is reading the values of a key-value bucket.
func peekBucket(bucket string) []string { return peek(jsstore.StreamName(bucket)) }

// readBucket is what reading and watching a key-value bucket takes (workers).
func readBucket(bucket string) []string { return readStream(jsstore.StreamName(bucket)) }

// writeKey is what writing one key (or every key, "*" or ">") of a bucket takes.
func writeKey(bucket, key string) string { return jsstore.SubjectPrefix(bucket) + key }

// consumerStatus is reading the workers' consumer (status, is it paused).
func consumerStatus(stream, consumer string) []string {
	return []string{api("STREAM.INFO." + stream), api("CONSUMER.INFO." + stream + "." + consumer)}
}

// Roles returns the four roles for the deployment names n.
func Roles(n layout.Names) []Role {
	inbox := []string{"_INBOX.>"}
	info := api("INFO")

	// Results, durably: consumers of one's own on the results stream, and
	// core subscriptions on the result subjects (only workers publish there).
	results := readStream(n.Results)
	// Schedules, listed (read-only: stored ones, requests, an earlier
	// release's).
	schedules := slices.Concat(peek(n.Schedules), peek(n.Commands), peek(n.LegacyCommands))
	// Status: the consumer, the pause record, the budget, the holds.
	status := slices.Concat(consumerStatus(n.Commands, n.Consumer), consumerStatus(n.LegacyCommands, n.Consumer),
		peekBucket(n.Fleet), peekBucket(n.Holds), peek(n.Counters))

	publisher := Role{Name: Publisher,
		Publish: slices.Concat([]string{messages.CommandSubject, messages.ScheduleSubjects, info}, results, schedules,
			// bccstop stop: reads the ledger for outcomes of repeats, says
			// when the fleet is paused, and which targets are held.
			peekBucket(n.Ledger), consumerStatus(n.Commands, n.Consumer), peekBucket(n.Holds), peekBucket(n.Fleet)),
		Subscribe: slices.Concat(inbox, []string{messages.ResultSubjects})}

	operator := Role{Name: Operator,
		Publish: slices.Concat(publisher.Publish, status, readStream(n.Control), []string{
			api("CONSUMER.PAUSE." + n.Commands + "." + n.Consumer),
			api("CONSUMER.PAUSE." + n.LegacyCommands + "." + n.Consumer),
			writeKey(n.Fleet, layout.PauseKey),
			writeKey(n.Holds, ">"),
			api("STREAM.MSG.DELETE." + n.Schedules),
		}),
		Subscribe: slices.Concat(inbox, []string{messages.ResultSubjects, messages.ControlSubjects})}

	observer := Role{Name: Observer,
		Publish:   slices.Concat([]string{info}, results, readStream(n.Control), status, schedules),
		Subscribe: slices.Concat(inbox, []string{messages.ResultSubjects, messages.ControlSubjects})}

	var provision []string
	for _, s := range []string{n.Commands, n.LegacyCommands, n.Results, n.Control, n.Schedules, n.Counters,
		jsstore.StreamName(n.Ledger), jsstore.StreamName(n.Fleet), jsstore.StreamName(n.Workers), jsstore.StreamName(n.Holds)} {
		provision = append(provision, api("STREAM.CREATE."+s), api("STREAM.INFO."+s))
		if s != jsstore.StreamName(n.Holds) {
			// Holds are created by a worker when missing, never changed by one.
			provision = append(provision, api("STREAM.UPDATE."+s))
		}
	}
	consume := func(stream string) []string {
		return []string{
			api("CONSUMER.CREATE." + stream + ".>"),
			api("CONSUMER.DURABLE.CREATE." + stream + ".*"),
			api("CONSUMER.INFO." + stream + ".*"),
			api("CONSUMER.MSG.NEXT." + stream + ".*"),
			api("STREAM.MSG.GET." + stream),
			"$JS.ACK." + stream + ".>",
		}
	}
	worker := Role{Name: Worker,
		Publish: slices.Concat([]string{info}, provision, consume(n.Commands), consume(n.LegacyCommands),
			readStream(n.Results), readStream(n.Schedules), readBucket(n.Ledger), readBucket(n.Fleet), readBucket(n.Workers),
			readBucket(n.Holds), readStream(n.Counters), []string{
				// Results and control events: only workers publish them.
				messages.ResultSubjects, messages.ControlSubjects,
				// The ledger, the fleet's records, the registry of workers.
				writeKey(n.Ledger, ">"), writeKey(n.Fleet, ">"), writeKey(n.Workers, ">"),
				// The fleet's counters (the blast-radius budget).
				layout.CounterSubjects,
				// Accepted schedules; repeating schedules of layout 1 removed.
				layout.ScheduleSubjects, api("STREAM.MSG.DELETE." + n.LegacyCommands),
				// The blast-radius budget pauses the fleet (pause and resume are
				// one API subject: resuming is kept from workers by code).
				api("CONSUMER.PAUSE." + n.Commands + "." + n.Consumer),
				api("CONSUMER.PAUSE." + n.LegacyCommands + "." + n.Consumer),
			}),
		Subscribe: []string{layout.WorkerInboxPrefix + ".>"}}

	roles := []Role{publisher, operator, observer, worker}
	for i := range roles {
		roles[i].Variable = "BCCSTOP_" + strings.ToUpper(roles[i].Name)
		roles[i].Publish = unique(roles[i].Publish)
		roles[i].Subscribe = unique(roles[i].Subscribe)
	}
	return roles
}

func unique(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// Render writes permissions.conf for the names n.
func Render(n layout.Names) string {
	var b strings.Builder
	b.WriteString(`# bccstop's NATS authorization: one variable per role of the contract
# (docs/contract.md, section 7), to be given to users with
#   { user: …, password: …, permissions: $BCCSTOP_PUBLISHER }
# or with an nkey. Include this file in the server configuration
# (include ./permissions.conf) before the users that name the variables.
#
# Generated from internal/layout and messages by go run ./deploy/nats/render;
# do not edit by hand (TestPermissionsFileIsRendered keeps it in step).
# Every subject not listed is denied. Written for the default stream,
# consumer and bucket names; render it again for others.
`)
	for _, r := range Roles(n) {
		fmt.Fprintf(&b, "\n# %s\n%s = {\n  publish: {\n    allow: [\n", roleDoc[r.Name], r.Variable)
		for _, s := range r.Publish {
			fmt.Fprintf(&b, "      %q\n", s)
		}
		b.WriteString("    ]\n  }\n  subscribe: {\n    allow: [\n")
		for _, s := range r.Subscribe {
			fmt.Fprintf(&b, "      %q\n", s)
		}
		b.WriteString("    ]\n  }\n}\n")
	}
	return b.String()
}

var roleDoc = map[string]string{
	Publisher: "publisher: publishes commands (now, or one-shot schedule requests) and reads results.",
	Operator:  "operator: all a publisher may; pauses and resumes the fleet, holds and releases instances, cancels schedules, reads status.",
	Observer:  "observer: reads results, control events and status; publishes nothing else.",
	Worker:    "worker: consumes commands, writes the ledger and the fleet's records and counters, reads holds, publishes results and control events,\n# pauses the consumer when the blast-radius budget trips, provisions its streams and buckets.",
}
