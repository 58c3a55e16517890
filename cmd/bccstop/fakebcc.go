package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

const fakeBCCUsage = `Usage: bccstop fakebcc [flags]

A strict simulator of the BCC API calls bccstop makes:

  PUT  /v2/instance/{id}?stop                  stop an instance
  GET  /v2/instance/{id}                       describe it
  POST /v2/instance/listByInstanceId           describe several: {"instanceIds":[…]} (1-100 ids),
                                               paged by marker and maxKeys in the query
  GET  /v2/instance?tags=…&marker=…&maxKeys=…  list instances by tag

It checks bce-auth-v1 signatures and timestamps against BCE_ACCESS_KEY_ID and
BCE_SECRET_ACCESS_KEY (or their _FILE variants; BCE_SESSION_TOKEN too when
set), keeps instance state Running → Stopping → Stopped, and answers as the
real service does, with BCE's error body {"requestId","code","message"} and
the x-bce-request-id header. Baidu's SDKs work against it. The answers, the
first that applies:

  403 InvalidAccessKeyId        an unknown access key id
  403 SignatureDoesNotMatch     a wrong secret or signature (401 AccessDenied: none at all)
  400 RequestExpired            a signature timestamp outside BCE's window of the simulator's
                                clock (its expiration behind, 15 minutes ahead; --clock-skew)
  429 RequestLimitExceeded      past --max-rate (or 503 ServiceUnavailable, --throttle-status),
                                with Retry-After; nothing is looked at or changed
  400 MalformedJSON             a stop body that is not JSON
  400 InappropriateJSON         JSON that is not an object, a wrong type, an unknown field
                                (the real service ignores unknown fields; refused here, so that
                                a client learns it sends what it did not mean to)
  500 InternalError             injected (--fail-rate also gives 503 and timeouts)
  404 NoSuchObject              an unknown instance, stop and describe (unless --auto-create);
                                the batch describe leaves unknown ids out of its answer
  403 AccessDenied              an instance with the attribute denied: stop, describe, and a
                                batch describe naming it
  403 Bcc.PrePayCannotStopWithNoCharge     stopWithNoCharge of a prepaid instance
  403 Bcc.Rocv1CannotStopWithNoCharge      stopWithNoCharge of one with localDisk
  403 Bcc.InstanceTypeNotSupportException  stopWithNoCharge of one with noChargeUnsupported
  409 Instance.StopInstanceOperationForbidden  a stop of an instance that is not Running

The list filters on tags=k1:v1,k2 (keys ANDed, values for one key ORed, a key
alone matching any value). The list and the batch describe page like the real
API: maxKeys 1-1000 (default 1000), marker = the id a page starts from, in id
order, nextMarker and isTruncated while more follow. Any other query parameter,
or a malformed one, is a 400 InvalidURI.

Seed files (--seed) are a JSON object or lines. JSON:

  {"i-abc":"Running",
   "i-def":{"status":"Stopped","tags":{"env":"staging"},"prepaid":true,"localDisk":true,
            "noChargeUnsupported":true,"denied":true}}

Lines, "<id> <status> [key=value …] [attr:NAME …]" (# comments; a tag value with
spaces needs JSON); attr: marks an attribute, which no tag can be taken for:

  i-abc Running
  i-def Stopped env=staging attr:prepaid attr:denied

A status is one the API reports (Running, Starting, Stopping, Stopped, Deleted,
Scaling, Expired, Error, SnapshotProcessing, ImageProcessing, ChangeVpc,
Recycled); only a stop changes it. The attributes: prepaid (paid in advance;
describe shows paymentTiming Prepaid), localDisk (has local disks),
noChargeUnsupported (a type that cannot be stopped without charge), denied (the
access key may not touch it).
`

func runFakeBCC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop fakebcc", fakeBCCUsage, stdout, stderr)
	addr := fs.String("addr", "127.0.0.1:8900", "`HOST:PORT` to listen on")
	running := fs.String("running", "", "comma-separated `IDs` of Running instances")
	stopped := fs.String("stopped", "", "comma-separated `IDs` of Stopped instances")
	seed := fs.String("seed", "", "`FILE` of instance states, tags and attributes, JSON or lines (see above)")
	var tagFlags []string
	fs.Func("tag", "give each ID these tags: `ID[,ID…]=KEY:VALUE[,KEY:VALUE…]` (KEY: for an empty value),\nfor example i-abc=env:staging or i-a,i-b=env:staging,team:web; repeatable, added to the\ntags from --seed; each ID must be given by --running, --stopped or --seed", func(v string) error {
		tagFlags = append(tagFlags, v)
		return nil
	})
	var attrFlags []string
	fs.Func("attr", "give each ID these attributes: `ID[,ID…]=NAME[,NAME…]`, NAME one of prepaid,\nlocalDisk, noChargeUnsupported, denied; for example i-abc=prepaid or\ni-a,i-b=localDisk,denied; repeatable, added to those from --seed; each ID must be\ngiven by --running, --stopped or --seed", func(v string) error {
		attrFlags = append(attrFlags, v)
		return nil
	})
	autoCreate := fs.Bool("auto-create", false, "treat any unknown well-formed i-… id as a Running instance")
	stopDuration := duration(fs.FlagSet, "stop-duration", 2*time.Second, "how long a stopped instance stays Stopping (a `DURATION`)")
	latency := duration(fs.FlagSet, "latency", 0, "latency added to every answer (a `DURATION`)")
	jitter := duration(fs.FlagSet, "jitter", 0, "up to `DURATION` more latency, at random")
	failRate := fs.Float64("fail-rate", 0, "probability (0-1) that a stop call fails with 500, 503 or a timeout")
	maxRate := fs.Int("max-rate", 0, "let at most `N` calls through in any one second (a sliding window over every\noperation); refuse the others with --throttle-status and Retry-After (0: no limit)")
	throttleStatus := fs.Int("throttle-status", 429, "the `STATUS` of a call past --max-rate: 429 (RequestLimitExceeded) or 503\n(ServiceUnavailable)")
	clockSkew := duration(fs.FlagSet, "clock-skew", 0, "run the clock signatures are checked against `DURATION` ahead (negative: behind),\nso that clients look skewed: past 30m ahead or 15m behind, every call is RequestExpired")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	creds, err := simulatorCredentials()
	if err != nil {
		fmt.Fprintf(stderr, "bccstop fakebcc: %v\n", err)
		return exitUsage
	}
	switch {
	case math.IsNaN(*failRate) || *failRate < 0 || *failRate > 1:
		fmt.Fprintln(stderr, "bccstop fakebcc: --fail-rate must be between 0 and 1")
		return exitUsage
	case *maxRate < 0:
		fmt.Fprintln(stderr, "bccstop fakebcc: --max-rate must be 0 (no limit) or more")
		return exitUsage
	case *throttleStatus != 429 && *throttleStatus != 503:
		fmt.Fprintln(stderr, "bccstop fakebcc: --throttle-status must be 429 or 503")
		return exitUsage
	}
	sim := fakebcc.New(fakebcc.Options{Credentials: creds, AutoCreate: *autoCreate, StopDuration: *stopDuration, Latency: *latency, Jitter: *jitter,
		ClockSkew: *clockSkew, MaxRate: *maxRate, ThrottleStatus: *throttleStatus})
	sim.Seed(fakebcc.Running, splitIDs(*running)...)
	sim.Seed(fakebcc.Stopped, splitIDs(*stopped)...)
	if *seed != "" {
		if _, err := sim.LoadSeedFile(*seed); err != nil {
			fmt.Fprintf(stderr, "bccstop fakebcc: %v\n", err)
			return exitUsage
		}
	}
	if err := applyTagFlags(sim, tagFlags); err != nil {
		fmt.Fprintf(stderr, "bccstop fakebcc: --tag: %v\n", err)
		return exitUsage
	}
	if err := applyAttrFlags(sim, attrFlags); err != nil {
		fmt.Fprintf(stderr, "bccstop fakebcc: --attr: %v\n", err)
		return exitUsage
	}
	if *failRate > 0 {
		sim.SetFaults(fakebcc.Faults{Rate: *failRate, Hang: 30 * time.Second})
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "bccstop fakebcc: --addr: %v\n", err)
		return exitUsage
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	fmt.Fprintf(stdout, "BCC simulator listening on http://%s (access key id %s)\n", ln.Addr(), creds.AccessKeyID)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(stderr, "bccstop fakebcc: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// simulatorCredentials reads the same credential variables as the worker.
func simulatorCredentials() (bce.Credentials, error) {
	cfg, err := config.LoadCredentials()
	if err != nil {
		return bce.Credentials{}, err
	}
	if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return bce.Credentials{}, errors.New("BCE_ACCESS_KEY_ID and BCE_SECRET_ACCESS_KEY (or their _FILE variants) must be set: the simulator accepts requests signed with them")
	}
	return bce.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey.Reveal(), SessionToken: cfg.SessionToken.Reveal()}, nil
}

// applyTagFlags adds the tags of each --tag to its instances, which must
// already exist.
func applyTagFlags(sim *fakebcc.Server, flags []string) error {
	for _, f := range flags {
		ids, tags, err := fakebcc.ParseTagAssignment(f)
		if err != nil {
			return err
		}
		for _, id := range ids {
			have, ok := sim.Tags(id)
			if !ok {
				return fmt.Errorf("instance %s is not given by --running, --stopped or --seed", id)
			}
			maps.Copy(have, tags)
			if err := sim.SetTags(id, have); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyAttrFlags turns on the attributes of each --attr for its
// instances, which must already exist.
func applyAttrFlags(sim *fakebcc.Server, flags []string) error {
	for _, f := range flags {
		ids, attrs, err := fakebcc.ParseAttributeAssignment(f)
		if err != nil {
			return err
		}
		for _, id := range ids {
			have, ok := sim.Attributes(id)
			if !ok {
				return fmt.Errorf("instance %s is not given by --running, --stopped or --seed", id)
			}
			if err := sim.SetAttributes(id, have.Or(attrs)); err != nil {
				return err
			}
		}
	}
	return nil
}

func splitIDs(s string) []string {
	var out []string
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}
