// Package natsconn opens NATS connections from bccstop's configuration:
// authentication and TLS as the nats CLI names them, reconnecting forever
// with backoff, and connection events logged.
package natsconn

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bccstop/bccstop/internal/config"
)

// Options add to the configuration what only the caller knows.
type Options struct {
	// Name identifies the connection on the server (nats server report connections).
	Name string
	// Logger receives connection events; nil logs nothing.
	Logger *slog.Logger
	// RetryOnFailedConnect keeps trying in the background when no server
	// answers at start (a daemon); without it Connect fails at once (a CLI).
	RetryOnFailedConnect bool
	// InboxPrefix, when set, replaces "_INBOX" in the connection's reply
	// subjects, so a role's replies go where only that role may subscribe.
	InboxPrefix string
}

// Connect opens a connection that reconnects forever, with a backoff of
// about a second plus jitter between attempts.
func Connect(cfg config.NATS, o Options) (*nats.Conn, error) {
	opts, err := options(cfg, o)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", RedactURLs(cfg.URL), err)
	}
	return nc, nil
}

func options(cfg config.NATS, o Options) ([]nats.Option, error) {
	auth, err := authOptions(cfg)
	if err != nil {
		return nil, err
	}
	return append(baseOptions(o), auth...), nil
}

// baseOptions are the options of every connection: its name, reconnecting
// forever, and connection events logged.
func baseOptions(o Options) []nats.Option {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.ReconnectBufSize(32 << 20),
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS connection lost; reconnecting", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS connection restored", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS asynchronous error", "error", err, "subject", subject)
		}),
	}
	if o.RetryOnFailedConnect {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	return opts
}

// authOptions are the authentication and TLS options of cfg.
func authOptions(cfg config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	set := 0
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
		set++
	}
	if cfg.NKey != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NKey)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY: %w", err)
		}
		opts = append(opts, opt)
		set++
	}
	if cfg.User != "" || cfg.Password != "" {
		if cfg.User == "" || cfg.Password == "" {
			return nil, fmt.Errorf("NATS_USER and NATS_PASSWORD go together; only one is set")
		}
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password.Reveal()))
		set++
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token.Reveal()))
		set++
	}
	if set > 1 {
		return nil, fmt.Errorf("set only one of NATS_CREDS, NATS_NKEY, NATS_USER/NATS_PASSWORD and NATS_TOKEN")
	}
	if cfg.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.CA))
	}
	if cfg.Cert != "" || cfg.Key != "" {
		if cfg.Cert == "" || cfg.Key == "" {
			return nil, fmt.Errorf("NATS_CERT and NATS_KEY go together; only one is set")
		}
		opts = append(opts, nats.ClientCert(cfg.Cert, cfg.Key))
	}
	return opts, nil
}

// RedactURLs hides passwords and tokens embedded in server URLs.
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "[redacted]" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}
