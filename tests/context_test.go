package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// authNATS starts a NATS server with JetStream and the authentication of
// opts, and creates the workers' commands stream and durable consumer
// (what `bccstop status` reads) as user connects.
func authNATS(t *testing.T, opts *server.Options, user ...nats.Option) string {
	t.Helper()
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, t.TempDir(), true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	nc, err := nats.Connect(s.ClientURL(), user...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BCCSTOP_COMMANDS_V2", Subjects: []string{"bcc.instance.stop"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bccstop-worker", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	return s.ClientURL()
}

// natsContexts lays out contexts as the nats CLI keeps them:
// $XDG_CONFIG_HOME/nats/context/NAME.json, and the selected one's name in
// $XDG_CONFIG_HOME/nats/context.txt. It returns XDG_CONFIG_HOME.
func natsContexts(t *testing.T, selected string, contexts map[string]string) string {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range contexts {
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if selected != "" {
		if err := os.WriteFile(filepath.Join(home, "nats", "context.txt"), []byte(selected), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

type contextCase struct {
	name string
	env  []string
	args []string
	code int    // the exit status
	says string // on stderr, when it fails
}

func runContextCases(t *testing.T, home string, cases []contextCase) {
	t.Helper()
	for _, tc := range cases {
		env := append([]string{"XDG_CONFIG_HOME=" + home}, tc.env...)
		args := append([]string{"status", "--since", "0", "--output", "json"}, tc.args...)
		out, errOut, code := run(t, env, args...)
		if code != tc.code || (tc.code == 0 && !strings.Contains(out, `"consumer":"bccstop-worker"`)) || !strings.Contains(errOut, tc.says) {
			t.Errorf("%s: bccstop %s with %v: exit %d (want %d)\nstdout: %s\nstderr: %s (want %q)",
				tc.name, strings.Join(args, " "), tc.env, code, tc.code, out, errOut, tc.says)
		}
	}
}

// TestNATSContexts: a user who chose a context with `nats context select`
// needs no flags; --context and NATS_CONTEXT pick another (the flag first);
// as in the nats CLI the NATS_* variables override the context's settings
// and the flags override both; a context that does not exist is a usage
// error naming it.
func TestNATSContexts(t *testing.T) {
	url := authNATS(t, &server.Options{Users: []*server.User{{Username: "alice", Password: "s3cret"}}}, nats.UserInfo("alice", "s3cret"))
	nowhere := "nats://" + freeAddr(t)
	home := natsContexts(t, "dev", map[string]string{
		"dev":      fmt.Sprintf(`{"description":"the test server","url":%q,"user":"alice","password":"s3cret"}`, url),
		"wrong-pw": fmt.Sprintf(`{"url":%q,"user":"alice","password":"nope"}`, url),
		"nowhere":  fmt.Sprintf(`{"url":%q,"user":"alice","password":"s3cret"}`, nowhere),
		"domain":   fmt.Sprintf(`{"url":%q,"jetstream_domain":"hub"}`, url),
	})
	file := filepath.Join(t.TempDir(), "elsewhere.json")
	os.WriteFile(file, []byte(fmt.Sprintf(`{"url":%q,"user":"alice","password":"s3cret"}`, url)), 0o600)
	runContextCases(t, home, []contextCase{
		{"the selected context, no flags", nil, nil, 0, ""},
		{"NATS_CONTEXT picks one", []string{"NATS_CONTEXT=nowhere"}, nil, 5, "cannot connect to NATS at " + nowhere + " (context nowhere)"},
		{"--context wins over NATS_CONTEXT", []string{"NATS_CONTEXT=nowhere"}, []string{"--context", "dev"}, 0, ""},
		{"a context's .json file", nil, []string{"--context", file}, 0, ""},
		{"the context's password is used", nil, []string{"--context", "wrong-pw"}, 5, "Authorization Violation"},
		{"NATS_PASSWORD overrides the context", []string{"NATS_PASSWORD=s3cret"}, []string{"--context", "wrong-pw"}, 0, ""},
		{"--password overrides NATS_PASSWORD", []string{"NATS_PASSWORD=nope"}, []string{"--password", "s3cret"}, 0, ""},
		{"NATS_URL overrides the context", []string{"NATS_URL=" + nowhere}, nil, 5, "cannot connect to NATS at " + nowhere},
		{"--server overrides NATS_URL", []string{"NATS_URL=" + nowhere}, []string{"--server", url}, 0, ""},
		{"-s too", []string{"NATS_CONTEXT=nowhere"}, []string{"-s", url}, 0, ""},
		{"an unknown context", nil, []string{"--context", "staging"}, 2, `NATS context "staging"`},
		{"an unknown NATS_CONTEXT", []string{"NATS_CONTEXT=staging"}, nil, 2, `NATS context "staging"`},
		{"a JetStream domain is refused", nil, []string{"--context", "domain"}, 2, `JetStream domain "hub"`},
	})
	// Without any context, the flags alone.
	runContextCases(t, t.TempDir(), []contextCase{
		{"flags only", nil, []string{"--server", url, "--user", "alice", "--password", "s3cret"}, 0, ""},
		{"variables only", []string{"NATS_URL=" + url, "NATS_USER=alice", "NATS_PASSWORD=s3cret"}, nil, 0, ""},
		{"a wrong password", nil, []string{"--server", url, "--user", "alice", "--password", "nope"}, 5, "Authorization Violation"},
	})

	// The other commands take the same settings: stop publishes through the
	// selected context with no flag at all.
	out, errOut, code := run(t, []string{"XDG_CONFIG_HOME=" + home}, "stop", "--wait=false", "i-ctxstop1")
	if code != 0 || !strings.Contains(out, "published 1 command (") {
		t.Errorf("stop through the selected context: exit %d\n%s%s", code, out, errOut)
	}
}

// TestNATSCredsFile: a user credentials file (JWT and seed, as nsc writes
// it) authenticates from a context, from NATS_CREDS or from --creds, on a
// server in operator mode.
func TestNATSCredsFile(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	operatorPub, _ := operator.PublicKey()
	system, _ := nkeys.CreateAccount() // JetStream in operator mode needs a system account
	systemPub, _ := system.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	operatorClaims.SystemAccount = systemPub
	if _, err := operatorClaims.Encode(operator); err != nil { // self-signs the claims
		t.Fatal(err)
	}
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	accountPub, _ := account.PublicKey()
	accountClaims := jwt.NewAccountClaims(accountPub)
	accountClaims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := accountClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	for pub, claims := range map[string]string{systemPub: systemJWT, accountPub: accountJWT} {
		if err := resolver.Store(pub, claims); err != nil {
			t.Fatal(err)
		}
	}
	credsFile := func(name string, signer nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		userJWT, err := jwt.NewUserClaims(userPub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		creds, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".creds")
		os.WriteFile(path, creds, 0o600)
		return path
	}
	good := credsFile("good", account)
	stranger, _ := nkeys.CreateAccount() // an account the server does not know
	bad := credsFile("bad", stranger)

	url := authNATS(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{operatorClaims}, AccountResolver: resolver, SystemAccount: systemPub},
		nats.UserCredentials(good))
	home := natsContexts(t, "ops", map[string]string{"ops": fmt.Sprintf(`{"url":%q,"creds":%q}`, url, good)})
	runContextCases(t, home, []contextCase{
		{"creds from the selected context", nil, nil, 0, ""},
		{"--creds overrides the context's", nil, []string{"--creds", bad}, 5, "cannot connect to NATS"},
		{"NATS_CREDS overrides the context's", []string{"NATS_CREDS=" + bad}, nil, 5, "cannot connect to NATS"},
		{"a creds file that is not there", nil, []string{"--creds", filepath.Join(t.TempDir(), "missing.creds")}, 5, "missing.creds"},
	})
	runContextCases(t, t.TempDir(), []contextCase{
		{"--creds alone", nil, []string{"--server", url, "--creds", good}, 0, ""},
		{"NATS_CREDS alone", []string{"NATS_URL=" + url, "NATS_CREDS=" + good}, nil, 0, ""},
		{"no credentials", nil, []string{"--server", url}, 5, "Authorization Violation"},
	})
}
