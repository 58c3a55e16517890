package worker

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bccstop/bccstop/internal/bcc"
)

// A wrong access key, a wrong secret or a clock that is off is the
// worker's fault, not the command's: the BCC API answers every command
// alike (403 InvalidAccessKeyId, 403 SignatureDoesNotMatch, 400
// RequestExpired after the client's re-signed retry). Turning a backlog
// into as many failed results would be the worst answer. Instead the worker
// hands the command back untouched, stops taking commands (/readyz says
// why), logs it once, counts each refusal
// (bccstop_api_credentials_refused_total, and bccstop_api_credentials_ok
// 0), and probes the API every credentialProbe with a harmless signed call,
// reading its credentials again first (BCE_*_FILE rewritten, say): once the
// API accepts them, it goes on, and the commands get their real outcomes.

// credentialProbe is how often a worker whose credentials are refused
// tries them again.
const credentialProbe = 5 * time.Second

// credentialRefusal is what the API said of the credentials, and since when.
type credentialRefusal struct {
	code, message string
	since         time.Time
}

// credentials is the state of this worker's BCE credentials.
type credentials struct {
	refused atomic.Pointer[credentialRefusal]
}

// readyErr says why no command is taken, nil while the credentials work.
func (c *credentials) readyErr() error {
	r := c.refused.Load()
	if r == nil {
		return nil
	}
	return fmt.Errorf("the BCC API refuses this worker's credentials since %s (%s: %s): no command is taken until it accepts them; check BCE_ACCESS_KEY_ID, BCE_SECRET_ACCESS_KEY (or their _FILE) and the clock",
		r.since.UTC().Format(time.RFC3339), r.code, r.message)
}

// credentialsRefused records a refusal of the credentials and hands the
// command back, untouched.
func (w *Worker) credentialsRefused(ctx context.Context, d *delivery, c claim, err error) result {
	w.refuseCredentials(ctx, err)
	return w.handBack(ctx, d, c, fmt.Errorf("the BCC API refuses this worker's credentials; the command is handed back: %w", err))
}

// refuseCredentials records a refusal: the first one stops the worker from
// taking commands, is logged and starts the probe.
func (w *Worker) refuseCredentials(ctx context.Context, err error) {
	w.tel.credentialsRefused.Add(ctx, 1)
	var apiErr *bcc.APIError
	r := &credentialRefusal{code: "RequestExpired", since: w.opts.Now()}
	if errors.As(err, &apiErr) {
		r.code, r.message = apiErr.Code, printable(apiErr.Message, 200)
	}
	if !w.creds.refused.CompareAndSwap(nil, r) {
		return
	}
	w.log.ErrorContext(ctx, "the BCC API refuses this worker's credentials: no command is taken until it accepts them (they are tried again every "+credentialProbe.String()+")",
		"code", r.code, "message", r.message, "access_key_id", w.opts.AccessKeyID)
	go w.probeCredentials(w.probeCtx)
}

// probeCredentials tries the credentials until the API accepts them.
func (w *Worker) probeCredentials(ctx context.Context) {
	t := time.NewTicker(credentialProbe)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.opts.ReloadCredentials != nil {
			if err := w.opts.ReloadCredentials(); err != nil {
				w.log.Warn("could not read the BCE credentials again", "error", err)
			}
		}
		callCtx, cancel := context.WithTimeout(ctx, w.opts.CallTimeout)
		err := w.opts.API.CheckCredentials(callCtx)
		cancel()
		if bcc.IsCredentialError(err) {
			w.tel.credentialsRefused.Add(ctx, 1)
			continue
		}
		if err != nil {
			continue // the API could not tell (unreachable, throttled): try again
		}
		since := w.creds.refused.Swap(nil)
		w.log.Info("the BCC API accepts this worker's credentials again: taking commands", "refused_since", since.since.UTC().Format(time.RFC3339))
		return
	}
}
