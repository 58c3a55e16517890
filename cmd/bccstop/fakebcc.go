package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/bccstop/bccstop/internal/bce"
	"github.com/bccstop/bccstop/internal/config"
	"github.com/bccstop/bccstop/internal/fakebcc"
)

const fakeBCCUsage = `Usage: bccstop fakebcc [flags]

A strict simulator of the BCC API calls bccstop makes: PUT /v2/instance/{id}?stop,
GET /v2/instance/{id}, and GET /v2/instance?tags=…&marker=…&maxKeys=… (the
list). It checks bce-auth-v1 signatures and timestamps against
BCE_ACCESS_KEY_ID and BCE_SECRET_ACCESS_KEY (or their _FILE variants;
BCE_SESSION_TOKEN too when set), keeps instance state Running → Stopping →
Stopped, answers 409 Instance.StopInstanceOperationForbidden for an instance
that is not Running and 404 for an unknown one. Baidu's SDKs work against it.

The list filters on tags=k1:v1,k2 (keys ANDed, values for one key ORed, a key
alone matching any value) and pages like the real API: maxKeys 1-1000
(default 1000), marker = the id a page starts from, in id order, nextMarker
and isTruncated while more follow. Any other query parameter, or a malformed
one, is a 400 InvalidURI.
`

func runFakeBCC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bccstop fakebcc", fakeBCCUsage, stdout, stderr)
	addr := fs.String("addr", "127.0.0.1:8900", "`HOST:PORT` to listen on")
	running := fs.String("running", "", "comma-separated `IDs` of Running instances")
	stopped := fs.String("stopped", "", "comma-separated `IDs` of Stopped instances")
	seed := fs.String("seed", "", "`FILE` of instance states and tags: JSON {\"i-abc\":\"Running\",\"i-def\":{\"status\":\"Stopped\",\"tags\":{\"env\":\"staging\"}}}\nor lines \"<id> <status> [key=value …]\"")
	var tagFlags []string
	fs.Func("tag", "give each ID these tags: `ID[,ID…]=KEY:VALUE[,KEY:VALUE…]` (KEY: for an empty value),\nfor example i-abc=env:staging or i-a,i-b=env:staging,team:web; repeatable, added to the\ntags from --seed; each ID must be given by --running, --stopped or --seed", func(v string) error {
		tagFlags = append(tagFlags, v)
		return nil
	})
	autoCreate := fs.Bool("auto-create", false, "treat any unknown well-formed i-… id as a Running instance")
	stopDuration := fs.Duration("stop-duration", 2*time.Second, "how long a stopped instance stays Stopping")
	latency := fs.Duration("latency", 0, "added to every answer")
	jitter := fs.Duration("jitter", 0, "up to this much more latency, at random")
	failRate := fs.Float64("fail-rate", 0, "probability (0-1) that a stop call fails with 500, 503 or a timeout")
	if err := fs.parseNoArgs(args); err != nil {
		return flagExit(err)
	}
	creds, err := simulatorCredentials()
	if err != nil {
		fmt.Fprintf(stderr, "bccstop fakebcc: %v\n", err)
		return exitUsage
	}
	if *failRate < 0 || *failRate > 1 {
		fmt.Fprintln(stderr, "bccstop fakebcc: --fail-rate must be between 0 and 1")
		return exitUsage
	}
	sim := fakebcc.New(fakebcc.Options{Credentials: creds, AutoCreate: *autoCreate, StopDuration: *stopDuration, Latency: *latency, Jitter: *jitter})
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

func splitIDs(s string) []string {
	var out []string
	for _, id := range strings.Split(s, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}
