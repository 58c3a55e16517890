// Command plainloop is the benchmark's anchor: the plain program a competent
// engineer would write in an afternoon to do bccstop's work, and nothing more.
// It is not part of the product; `make bench` builds it and runs it
// alternately with the worker, on the same NATS server and simulator.
//
// Per command it pulls the message (the worker's durable pull consumer),
// decodes it with json.Unmarshal, claims it with a KeyValue Create, makes the
// signed stop call, records the outcome with a KeyValue Update, publishes the
// result with Nats-Msg-Id and waits for the acknowledgement, then acks the
// command. No tracing, metrics or logs; it does not wait for Stopped.
//
// The streams, consumer and bucket are the worker's, created by the worker's
// own provisioning, so both programs do the same broker work.
//
// Settings come from the worker's variables (NATS_URL, BCC_ENDPOINT,
// BCE_ACCESS_KEY_ID, BCE_SECRET_ACCESS_KEY) and from flags. It prints
// "plainloop: ready" once it consumes, and stops on SIGTERM.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/messages"
)

func main() {
	concurrency := flag.Int("concurrency", 64, "commands handled at once")
	stream := flag.String("stream", "BCCSTOP_COMMANDS_V2", "commands stream")
	consumer := flag.String("consumer", "bccstop-worker", "durable pull consumer")
	bucket := flag.String("bucket", "bccstop-ledger", "KeyValue bucket of the ledger")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *concurrency, *stream, *consumer, *bucket); err != nil {
		fmt.Fprintln(os.Stderr, "plainloop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, concurrency int, stream, consumer, bucket string) error {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", consumer, stream, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", bucket, err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The default keeps 2 idle connections per host: with more calls at
	// once than that, every call opens a connection and the machine runs
	// out of ephemeral ports within seconds.
	transport.MaxIdleConnsPerHost = concurrency
	h := &handler{
		js:       js,
		kv:       kv,
		endpoint: os.Getenv("BCC_ENDPOINT"),
		signer: bce.NewSigner(bce.Credentials{
			AccessKeyID: os.Getenv("BCE_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("BCE_SECRET_ACCESS_KEY"),
		}, 0),
		http: &http.Client{Timeout: 10 * time.Second, Transport: transport},
	}

	// Consume calls back on one goroutine: each message gets its own,
	// at most concurrency at once.
	slots := make(chan struct{}, concurrency)
	var inflight sync.WaitGroup
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-slots; inflight.Done() }()
			h.handle(msg)
		}()
	}, jetstream.PullMaxMessages(concurrency))
	if err != nil {
		return err
	}
	fmt.Println("plainloop: ready")
	<-ctx.Done()
	cc.Stop()
	inflight.Wait()
	return nc.Drain()
}

type handler struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	endpoint string
	signer   *bce.Signer
	http     *http.Client
}

// entry is the ledger value of one command.
type entry struct {
	State   string          `json:"state"` // attempting or done
	Since   time.Time       `json:"since"`
	Subject string          `json:"subject,omitempty"`
	Event   json.RawMessage `json:"event,omitempty"`
}

// takeOverAfter is how old an attempt must be before another delivery may
// take it over (the consumer's ack wait).
const takeOverAfter = 30 * time.Second

func (h *handler) handle(msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var cmd messages.StopCommand
	if err := json.Unmarshal(msg.Data(), &cmd); err != nil || !messages.ValidInstanceID(cmd.InstanceID) {
		_ = msg.Term()
		return
	}
	id := cmd.CommandID
	if id == "" {
		id = msg.Headers().Get("Nats-Msg-Id")
	}
	if id == "" {
		meta, err := msg.Metadata()
		if err != nil {
			_ = msg.Term()
			return
		}
		id = "seq-" + strconv.FormatUint(meta.Sequence.Stream, 10)
	}
	key := "cmd." + base64.RawURLEncoding.EncodeToString([]byte(id))

	claim, _ := json.Marshal(entry{State: "attempting", Since: time.Now()})
	rev, err := h.kv.Create(ctx, key, claim)
	if errors.Is(err, jetstream.ErrKeyExists) {
		rev, err = h.seen(ctx, msg, key, claim)
		if err == nil && rev == 0 {
			return // settled by seen
		}
	}
	if err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}

	data, retry := h.stop(ctx, cmd)
	if retry {
		// Not decided: free the claim for the next delivery.
		_ = h.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	data.CommandID = id
	data.Attempts = attempts(msg)
	ev := messages.NewResultEvent("plainloop-"+id, "plainloop", time.Now(), data)
	payload, err := json.Marshal(ev)
	if err != nil {
		_ = msg.Term()
		return
	}
	subject := messages.ResultSubject(data.Outcome)
	done, _ := json.Marshal(entry{State: "done", Since: time.Now(), Subject: subject, Event: payload})
	if _, err := h.kv.Update(ctx, key, done, rev); err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	h.publish(ctx, msg, id, subject, payload)
}

// seen handles a command whose key exists: a done one is published again
// (the results stream drops the copy) and acked; an attempt older than the
// ack wait is taken over (its revision returned); a younger one is left to
// its owner.
func (h *handler) seen(ctx context.Context, msg jetstream.Msg, key string, claim []byte) (uint64, error) {
	kve, err := h.kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	var e entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return 0, err
	}
	switch {
	case e.State == "done":
		h.publish(ctx, msg, idFromKey(key), e.Subject, e.Event)
		return 0, nil
	case time.Since(e.Since) > takeOverAfter:
		return h.kv.Update(ctx, key, claim, kve.Revision())
	}
	_ = msg.NakWithDelay(5 * time.Second)
	return 0, nil
}

func idFromKey(key string) string {
	raw, _ := base64.RawURLEncoding.DecodeString(key[len("cmd."):])
	return string(raw)
}

// publish stores the result, waits for JetStream's acknowledgement, then
// acks the command.
func (h *handler) publish(ctx context.Context, msg jetstream.Msg, id, subject string, payload []byte) {
	out := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
	out.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := h.js.PublishMsg(ctx, out); err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Ack()
}

// stop makes the signed stop call. retry is true when the answer says
// nothing final (no answer, 429 or 5xx).
func (h *handler) stop(ctx context.Context, cmd messages.StopCommand) (data messages.ResultData, retry bool) {
	data = messages.ResultData{InstanceID: cmd.InstanceID, ForceStop: cmd.ForceStop, StopWithNoCharge: cmd.StopWithNoCharge,
		Region: cmd.Region, NotAfter: cmd.NotAfter, WaitUntilStopped: cmd.WaitUntilStopped, Reason: cmd.Reason, RequestedBy: cmd.RequestedBy}
	body, _ := json.Marshal(map[string]bool{"forceStop": cmd.ForceStop, "stopWithNoCharge": cmd.StopWithNoCharge})
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, h.endpoint+"/v2/instance/"+cmd.InstanceID+"?stop", bytes.NewReader(body))
	if err != nil {
		return data, true
	}
	req.Header.Set("Content-Type", "application/json")
	h.signer.Sign(req, time.Now())
	resp, err := h.http.Do(req)
	if err != nil {
		return data, true
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	data.HTTPStatus, data.RequestID = resp.StatusCode, resp.Header.Get("X-Bce-Request-Id")
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		data.Outcome = messages.Succeeded
		return data, false
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return data, true
	}
	var apiErr struct{ Code, Message string }
	_ = json.Unmarshal(answer, &apiErr)
	data.Outcome, data.Code, data.Message = messages.Failed, apiErr.Code, apiErr.Message
	if resp.StatusCode == http.StatusConflict {
		data.Outcome = messages.Forbidden
	}
	return data, false
}

func attempts(msg jetstream.Msg) int {
	meta, err := msg.Metadata()
	if err != nil {
		return 1
	}
	return int(meta.NumDelivered)
}
