package tests

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natsauth "github.com/bccstop/bccstop/deploy/nats"
	"github.com/bccstop/bccstop/internal/fakebcc"
	"github.com/bccstop/bccstop/internal/jsstore"
	"github.com/bccstop/bccstop/internal/layout"
	"github.com/bccstop/bccstop/internal/testenv"
	"github.com/bccstop/bccstop/messages"
)

// shippedServerConfig is the NATS configuration Compose runs.
const shippedServerConfig = "../deploy/nats/nats-server.conf"

// verdict is what the server did with an attempted action.
type verdict string

const (
	allowed  verdict = "allowed"           // the server let it through (it may still answer an API error)
	violated verdict = "denied"            // a permissions violation: the server refused the subject
	refused  verdict = "refused by stream" // the subject is allowed, the stream refused the message
)

// roleClient is a connection as one role, collecting its permission errors.
type roleClient struct {
	t    *testing.T
	role string
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

func connectRole(t *testing.T, url, role string) *roleClient {
	errs := make(chan error, 64)
	nc := testenv.ConnectAs(t, url, role, errs)
	js, _ := jetstream.New(nc)
	return &roleClient{t: t, role: role, nc: nc, js: js, errs: errs}
}

// violatedOn waits briefly for a permissions violation naming subject.
func (c *roleClient) violatedOn(subject string, within time.Duration) bool {
	deadline := time.After(within)
	for {
		select {
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// request sends an API request: allowed when the server answers at all,
// denied when it reports a permissions violation for the subject (it does
// so at once; the answer of an allowed request comes as fast).
func (c *roleClient) request(subject string, body any) verdict {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return verdict("error: " + err.Error())
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(subject, inbox, b); err != nil {
		return verdict("error: " + err.Error())
	}
	answered := make(chan error, 1)
	go func() { _, err := sub.NextMsg(5 * time.Second); answered <- err }()
	return c.await(subject, answered)
}

// await waits for an answer (nil error: allowed) or a violation on subject.
func (c *roleClient) await(subject string, answered <-chan error) verdict {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-answered:
			if err == nil {
				return allowed
			}
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) {
				return refused
			}
			if c.violatedOn(subject, 200*time.Millisecond) {
				return violated
			}
			return verdict("error: " + err.Error())
		case err := <-c.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return violated
			}
		case <-timeout:
			return "error: no answer"
		}
	}
}

// publish stores a message through JetStream: allowed when stored,
// refused when the stream answers with an error, denied on a violation.
func (c *roleClient) publish(subject string, header nats.Header, data string) verdict {
	f, err := c.js.PublishMsgAsync(&nats.Msg{Subject: subject, Header: header, Data: []byte(data)})
	if err != nil {
		return verdict("error: " + err.Error())
	}
	answered := make(chan error, 1)
	go func() {
		select {
		case <-f.Ok():
			answered <- nil
		case err := <-f.Err():
			answered <- err
		}
	}()
	return c.await(subject, answered)
}

// subscribe subscribes: denied when the server says so.
func (c *roleClient) subscribe(subject string) verdict {
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		return verdict("error: " + err.Error())
	}
	defer sub.Unsubscribe()
	_ = c.nc.Flush()
	if c.violatedOn(subject, 500*time.Millisecond) {
		return violated
	}
	return allowed
}

// TestRolesAreEnforcedByTheServer starts a real NATS server from the
// shipped configuration (deploy/nats/nats-server.conf with
// permissions.conf), runs a worker as the worker role, and tries every
// action of the contract's section 7 as each role: each "may" goes through,
// each "may not" fails at the server, with a permissions violation, or,
// for a JetStream header on a subject the role may publish to (a roll-up,
// a schedule), with the commands stream's refusal: permissions filter
// subjects, never headers.
func TestRolesAreEnforcedByTheServer(t *testing.T) {
	srv := testenv.NATSWithRoles(t, shippedServerConfig)
	url := srv.ClientURL()
	sim, simURL := testenv.Simulator(t, fakebcc.Options{StopDuration: time.Hour})
	sim.Seed(fakebcc.Running, "i-perm1", "i-perm2")
	addr := freeAddr(t)
	w := start(t, workerEnv(t, url, simURL, addr, "NATS_USER=worker", "NATS_PASSWORD="+testenv.RolePasswords["worker"]), "worker")
	waitHTTP(t, "http://"+addr+"/readyz", 200, 20*time.Second)

	pub := connectRole(t, url, natsauth.Publisher)
	op := connectRole(t, url, natsauth.Operator)
	obs := connectRole(t, url, natsauth.Observer)
	wrk := connectRole(t, url, natsauth.Worker)
	n := layout.Defaults()

	// The job works under the roles: a publisher's command is stopped and
	// its result read back from the results stream.
	if v := pub.publish(messages.CommandSubject, nats.Header{"Nats-Msg-Id": {"perm-1"}}, `{"instanceId":"i-perm1","commandId":"perm-1"}`); v != allowed {
		t.Fatalf("publisher publishing a command: %s", v)
	}
	cons, err := pub.js.OrderedConsumer(context.Background(), n.Results, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("publisher reading results: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(15 * time.Second))
	if err != nil {
		t.Fatalf("publisher reading a result: %v\n%s", err, tail(w.Stderr.String(), 3000))
	}
	if ev, err := messages.DecodeResultEvent(msg.Data()); err != nil || ev.Data.Outcome != messages.Succeeded {
		t.Fatalf("result %s: %v", msg.Data(), err)
	}

	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	validResult := `{"specversion":"1.0","id":"forged","source":"bccstop/evil","type":"bcc.instance.stop.succeeded","data":{"commandId":"perm-2","outcome":"succeeded"}}`
	pauseBody := map[string]any{"pause_until": time.Now().Add(time.Hour).UTC()}
	type action struct {
		name string
		do   func(c *roleClient) verdict
		// want per role: publisher, operator, observer, worker ("" not asserted)
		want [4]verdict
	}
	actions := []action{
		{"publish a command", func(c *roleClient) verdict {
			return c.publish(messages.CommandSubject, nil, `{"instanceId":"i-perm2","commandId":"perm-2-`+c.role+`"}`)
		}, [4]verdict{allowed, allowed, violated, ""}},
		{"ask for a one-shot schedule", func(c *roleClient) verdict {
			return c.publish(messages.ScheduleSubjectPrefix+"perm-"+c.role, nats.Header{messages.HeaderSchedule: {"@at " + future}},
				`{"instanceId":"i-perm2","commandId":"perm-sched-`+c.role+`"}`)
		}, [4]verdict{allowed, allowed, violated, ""}},
		{"read results with a consumer of its own", func(c *roleClient) verdict {
			return c.request("$JS.API.CONSUMER.CREATE."+n.Results+".mine-"+c.role, map[string]any{"stream_name": n.Results,
				"config": map[string]any{"durable_name": "mine-" + c.role, "ack_policy": "explicit"}})
		}, [4]verdict{allowed, allowed, allowed, allowed}},
		{"subscribe to results", func(c *roleClient) verdict { return c.subscribe(messages.ResultSubjects) },
			[4]verdict{allowed, allowed, allowed, ""}},
		{"forge a result", func(c *roleClient) verdict {
			return c.publish(messages.ResultSubject(messages.Succeeded), nats.Header{"Nats-Msg-Id": {"perm-2"}}, validResult)
		}, [4]verdict{violated, violated, violated, ""}},
		{"publish a control event", func(c *roleClient) verdict {
			return c.publish(messages.ControlSubject(messages.ControlResumed), nil, `{}`)
		}, [4]verdict{violated, violated, violated, ""}},
		{"write the ledger", func(c *roleClient) verdict {
			return c.publish(jsstore.SubjectPrefix(n.Ledger)+layout.LedgerKey("perm-2"), nil, `{"state":"done"}`)
		}, [4]verdict{violated, violated, violated, ""}},
		{"write the pause record", func(c *roleClient) verdict {
			return c.publish(jsstore.SubjectPrefix(n.Fleet)+layout.PauseKey+"-test", nil, `{}`)
		}, [4]verdict{violated, violated, violated, ""}},
		{"hold an instance", func(c *roleClient) verdict {
			return c.publish(jsstore.SubjectPrefix(n.Holds)+"i-perm-"+c.role, nil, `{"v":1}`)
		}, [4]verdict{violated, allowed, violated, violated}},
		{"pause the fleet", func(c *roleClient) verdict {
			v := c.request("$JS.API.CONSUMER.PAUSE."+n.Commands+"."+n.Consumer, pauseBody)
			if v == allowed {
				c.request("$JS.API.CONSUMER.PAUSE."+n.Commands+"."+n.Consumer, map[string]any{})
			}
			return v
		}, [4]verdict{violated, allowed, violated, allowed}},
		{"read the status", func(c *roleClient) verdict {
			return c.request("$JS.API.CONSUMER.INFO."+n.Commands+"."+n.Consumer, nil)
		}, [4]verdict{allowed, allowed, allowed, allowed}},
		{"take commands", func(c *roleClient) verdict {
			return c.request("$JS.API.CONSUMER.MSG.NEXT."+n.Commands+"."+n.Consumer, map[string]any{"batch": 1, "no_wait": true})
		}, [4]verdict{violated, violated, violated, allowed}},
		{"acknowledge a command", func(c *roleClient) verdict {
			subject := "$JS.ACK." + n.Commands + "." + n.Consumer + ".1.1.1.1.0"
			if err := c.nc.Publish(subject, []byte("+ACK")); err != nil {
				return verdict("error: " + err.Error())
			}
			_ = c.nc.Flush()
			if c.violatedOn(subject, 500*time.Millisecond) {
				return violated
			}
			return allowed
		}, [4]verdict{violated, violated, violated, ""}},
		{"make a consumer on the commands stream", func(c *roleClient) verdict {
			return c.request("$JS.API.CONSUMER.CREATE."+n.Commands+".evil."+messages.CommandSubject, map[string]any{"stream_name": n.Commands,
				"config": map[string]any{"name": "evil", "filter_subject": messages.CommandSubject, "ack_policy": "explicit"}})
		}, [4]verdict{violated, violated, violated, ""}},
		{"change the workers' consumer", func(c *roleClient) verdict {
			return c.request("$JS.API.CONSUMER.CREATE."+n.Commands+"."+n.Consumer, map[string]any{"stream_name": n.Commands,
				"config": map[string]any{"durable_name": n.Consumer, "ack_policy": "none"}})
		}, [4]verdict{violated, violated, violated, ""}},
		{"delete the workers' consumer", func(c *roleClient) verdict {
			return c.request("$JS.API.CONSUMER.DELETE."+n.Commands+"."+n.Consumer, nil)
		}, [4]verdict{violated, violated, violated, violated}},
		{"purge the commands stream", func(c *roleClient) verdict { return c.request("$JS.API.STREAM.PURGE."+n.Commands, map[string]any{}) },
			[4]verdict{violated, violated, violated, violated}},
		{"delete a command", func(c *roleClient) verdict {
			return c.request("$JS.API.STREAM.MSG.DELETE."+n.Commands, map[string]any{"seq": 1})
		}, [4]verdict{violated, violated, violated, violated}},
		{"delete a result", func(c *roleClient) verdict {
			return c.request("$JS.API.STREAM.MSG.DELETE."+n.Results, map[string]any{"seq": 1})
		}, [4]verdict{violated, violated, violated, violated}},
		{"delete the commands stream", func(c *roleClient) verdict { return c.request("$JS.API.STREAM.DELETE."+n.Commands, nil) },
			[4]verdict{violated, violated, violated, violated}},
		{"create a stream", func(c *roleClient) verdict {
			return c.request("$JS.API.STREAM.CREATE.EVIL", map[string]any{"name": "EVIL", "subjects": []string{"evil.>"}})
		}, [4]verdict{violated, violated, violated, violated}},
		{"change the commands stream", func(c *roleClient) verdict {
			return c.request("$JS.API.STREAM.UPDATE."+n.Commands, map[string]any{"name": n.Commands, "subjects": layout.CommandSubjects, "allow_msg_schedules": true})
		}, [4]verdict{violated, violated, violated, ""}},
		{"roll up the commands stream", func(c *roleClient) verdict {
			return c.publish(messages.CommandSubject, nats.Header{"Nats-Rollup": {"all"}}, `{"instanceId":"i-perm2"}`)
		}, [4]verdict{refused, refused, violated, ""}},
		{"plant a repeating schedule in the commands stream", func(c *roleClient) verdict {
			return c.publish(messages.ScheduleSubjectPrefix+"evil", nats.Header{"Nats-Schedule": {"@every 2s"}, "Nats-Schedule-Target": {messages.CommandSubject}},
				`{"instanceId":"i-perm2"}`)
		}, [4]verdict{refused, refused, violated, ""}},
		{"plant a schedule in the schedules stream", func(c *roleClient) verdict {
			return c.publish(layout.ScheduleSubjectPrefix+"evil", nats.Header{"Nats-Schedule": {"@every 2s"}, "Nats-Schedule-Target": {layout.FiredSubject}},
				`{"instanceId":"i-perm2"}`)
		}, [4]verdict{violated, violated, violated, ""}},
		{"cancel a schedule", func(c *roleClient) verdict {
			return c.request("$JS.API.STREAM.MSG.DELETE."+n.Schedules, map[string]any{"seq": 1 << 40})
		}, [4]verdict{violated, allowed, violated, ""}},
		{"read the workers' replies", func(c *roleClient) verdict { return c.subscribe(layout.WorkerInboxPrefix + ".>") },
			[4]verdict{violated, violated, violated, allowed}},
		{"read others' commands", func(c *roleClient) verdict { return c.subscribe(messages.CommandSubject) },
			[4]verdict{violated, violated, violated, ""}},
	}
	clients := []*roleClient{pub, op, obs, wrk}
	for _, a := range actions {
		for i, c := range clients {
			want := a.want[i]
			if want == "" {
				continue
			}
			if got := a.do(c); got != want {
				t.Errorf("%s may%s %s: the server's answer was %q", c.role, map[bool]string{true: "", false: " not"}[want == allowed], a.name, got)
			}
		}
	}
	// Nothing the others tried reached the API: one stop, for the command.
	if calls := sim.StopCalls("i-perm1"); calls != 1 {
		t.Errorf("i-perm1: %d stop calls, want 1", calls)
	}
	if t.Failed() {
		t.Logf("worker stderr:\n%s", tail(w.Stderr.String(), 3000))
	}
}
