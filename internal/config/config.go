// Package config reads bccstop's settings from the environment (envconfig),
// with _FILE variants for secrets, and checks them. A bad setting is one
// error line naming the variable.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/bccstop/bccstop/internal/bcc"
	"github.com/bccstop/bccstop/internal/guard"
	"github.com/bccstop/bccstop/messages"
	"github.com/bccstop/bccstop/worker"
)

// Secret is a string that never prints: String and GoString redact it, so a
// Config can be logged or formatted with %+v safely.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts too.
func (s Secret) GoString() string { return s.String() }

// Reveal returns the secret itself, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Regions maps region names to endpoints. In the environment it is written
// "bj=https://bcc.bj.baidubce.com,gz=https://bcc.gz.baidubce.com".
type Regions map[string]string

// Decode implements envconfig.Decoder.
func (r *Regions) Decode(value string) error {
	m := Regions{}
	for _, pair := range strings.Split(value, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, endpoint, ok := strings.Cut(pair, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.TrimSpace(endpoint) == "" {
			return fmt.Errorf("%q is not region=endpoint", pair)
		}
		if _, dup := m[name]; dup {
			return fmt.Errorf("region %q is listed twice", name)
		}
		m[name] = strings.TrimSpace(endpoint)
	}
	*r = m
	return nil
}

// Durations is a comma-separated list of durations, such as "1s,5s,30s".
type Durations []time.Duration

// Decode implements envconfig.Decoder.
func (d *Durations) Decode(value string) error {
	var out Durations
	for _, part := range strings.Split(value, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := time.ParseDuration(part)
		if err != nil || v <= 0 {
			return fmt.Errorf("%q is not a positive duration like 5s", part)
		}
		out = append(out, v)
	}
	*d = out
	return nil
}

// String renders the list as it is written in the environment.
func (d Durations) String() string {
	parts := make([]string, len(d))
	for i, v := range d {
		parts[i] = v.String()
	}
	return strings.Join(parts, ",")
}

// InstanceIDs is a comma-separated list of instance ids, such as
// "i-db1, i-db2". Spaces around entries are allowed; an empty entry or one
// that is not an instance id is an error naming it: a protection list that
// silently protects nothing is the worst bug a stop tool can have.
type InstanceIDs []string

// Decode implements envconfig.Decoder.
func (ids *InstanceIDs) Decode(value string) error {
	var out InstanceIDs
	if strings.TrimSpace(value) == "" {
		*ids = nil
		return nil
	}
	for i, part := range strings.Split(value, ",") {
		id := strings.TrimSpace(part)
		switch {
		case id == "":
			return fmt.Errorf("entry %d is empty (a stray comma?)", i+1)
		case !messages.ValidInstanceID(id):
			return fmt.Errorf("entry %d, %q, is not an instance id (%s)", i+1, truncate(id, 80), messages.InstanceIDForm)
		}
		out = append(out, id)
	}
	*ids = out
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// NATS holds the connection settings, named as the nats CLI names them.
type NATS struct {
	URL      string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222" desc:"comma-separated NATS server URLs"`
	Creds    string `envconfig:"NATS_CREDS" desc:"path to a NATS user credentials file"`
	NKey     string `envconfig:"NATS_NKEY" desc:"path to a NATS NKey seed file"`
	User     string `envconfig:"NATS_USER" desc:"NATS user name"`
	Password Secret `envconfig:"NATS_PASSWORD" desc:"NATS password"`
	Token    Secret `envconfig:"NATS_TOKEN" desc:"NATS authentication token"`
	CA       string `envconfig:"NATS_CA" desc:"path to a CA certificate to verify the NATS servers"`
	Cert     string `envconfig:"NATS_CERT" desc:"path to a client certificate for NATS TLS"`
	Key      string `envconfig:"NATS_KEY" desc:"path to the client certificate's private key"`
}

// Credentials are the BCE credentials.
type Credentials struct {
	AccessKeyID     string `envconfig:"BCE_ACCESS_KEY_ID" desc:"BCE access key id"`
	SecretAccessKey Secret `envconfig:"BCE_SECRET_ACCESS_KEY" desc:"BCE secret access key"`
	SessionToken    Secret `envconfig:"BCE_SESSION_TOKEN" desc:"BCE STS session token, for temporary credentials"`
}

// Worker is the configuration of `bccstop worker`.
type Worker struct {
	NATS
	Credentials

	Endpoint  string  `envconfig:"BCC_ENDPOINT" default:"https://bcc.bj.baidubce.com" desc:"default BCC endpoint"`
	Endpoints Regions `envconfig:"BCC_ENDPOINTS" desc:"region map, bj=https://bcc.bj.baidubce.com,gz=https://bcc.gz.baidubce.com"`

	HTTPAddr          string        `envconfig:"BCCSTOP_HTTP_ADDR" default:":8080" desc:"address of /healthz, /readyz and /metrics"`
	Concurrency       int           `envconfig:"BCCSTOP_CONCURRENCY" default:"64" desc:"commands handled at once by this worker"`
	MaxDeliver        int           `envconfig:"BCCSTOP_MAX_DELIVER" default:"5" desc:"deliveries before a transient failure becomes failed"`
	Backoff           Durations     `envconfig:"BCCSTOP_BACKOFF" default:"1s,5s,15s,30s" desc:"redelivery delays after transient failures, the last one repeating"`
	AckWait           time.Duration `envconfig:"BCCSTOP_ACK_WAIT" default:"30s" desc:"a command whose worker died is redelivered after this"`
	CallTimeout       time.Duration `envconfig:"BCCSTOP_CALL_TIMEOUT" default:"10s" desc:"time limit of one BCC API call"`
	RateLimit         float64       `envconfig:"BCCSTOP_RATE_LIMIT" default:"100" desc:"BCC API calls per second of the whole fleet (stop and describe, every worker together); 0 for no limit"`
	MaxStops          string        `envconfig:"BCCSTOP_MAX_STOPS" desc:"blast-radius budget N/DURATION, e.g. 200/10m: no window of DURATION holds more than N stop calls across the fleet; spent, the fleet pauses itself until bccstop resume (unset: no budget)"`
	Protected         InstanceIDs   `envconfig:"BCCSTOP_PROTECTED_INSTANCES" desc:"comma-separated instance ids that must never be stopped (spaces around entries allowed)"`
	MaxCommandAge     time.Duration `envconfig:"BCCSTOP_MAX_COMMAND_AGE" default:"0" desc:"reject (Expired) a command stored longer than this before a worker took it; 0 for no limit"`
	StopWaitTimeout   time.Duration `envconfig:"BCCSTOP_STOP_WAIT_TIMEOUT" default:"10m" desc:"how long a command with waitUntilStopped waits for Stopped before it fails StopTimedOut"`
	StopWaitIntervals Durations     `envconfig:"BCCSTOP_STOP_WAIT_INTERVALS" default:"2s,5s,10s,15s" desc:"spacing of the describe calls while waiting for Stopped, the last one repeating"`
	ShutdownTimeout   time.Duration `envconfig:"BCCSTOP_SHUTDOWN_TIMEOUT" default:"25s" desc:"on SIGTERM, how long in-flight commands may take to finish"`

	Provision        bool          `envconfig:"BCCSTOP_PROVISION" default:"true" desc:"create the streams, consumer and ledger bucket at start, or update those whose configuration differs"`
	CommandsStream   string        `envconfig:"BCCSTOP_COMMANDS_STREAM" default:"BCCSTOP_COMMANDS_V2" desc:"stream that stores commands and schedule requests"`
	LegacyStream     string        `envconfig:"BCCSTOP_LEGACY_COMMANDS_STREAM" default:"BCCSTOP_COMMANDS" desc:"commands stream of releases before layout 2, carried over (retired and drained) when found"`
	CommandsMaxBytes int64         `envconfig:"BCCSTOP_COMMANDS_MAX_BYTES" default:"1073741824" desc:"size limit of the commands stream in bytes; once full, new commands are refused and none stored is dropped"`
	CommandsMaxMsgs  int64         `envconfig:"BCCSTOP_COMMANDS_MAX_MSGS" default:"1000000" desc:"commands the commands stream holds at most; once full, new ones are refused"`
	ResultsStream    string        `envconfig:"BCCSTOP_RESULTS_STREAM" default:"BCCSTOP_RESULTS" desc:"stream that stores result events"`
	Consumer         string        `envconfig:"BCCSTOP_CONSUMER" default:"bccstop-worker" desc:"durable consumer shared by all workers"`
	LedgerBucket     string        `envconfig:"BCCSTOP_LEDGER_BUCKET" default:"bccstop-ledger" desc:"KeyValue bucket of the idempotency ledger"`
	LedgerTTL        time.Duration `envconfig:"BCCSTOP_LEDGER_TTL" default:"24h" desc:"how long a concluded command's outcome is remembered (and repeats answered with it); an unfinished command's entry never expires"`
	ResultsMaxAge    time.Duration `envconfig:"BCCSTOP_RESULTS_MAX_AGE" default:"168h" desc:"how long result events are kept"`
	ResultsMaxBytes  int64         `envconfig:"BCCSTOP_RESULTS_MAX_BYTES" default:"1073741824" desc:"size limit of the results stream in bytes; the oldest results go first"`
	Replicas         int           `envconfig:"BCCSTOP_REPLICAS" default:"1" desc:"replicas of the streams and bucket (3 on a JetStream cluster)"`
	MaxAckPending    int           `envconfig:"BCCSTOP_MAX_ACK_PENDING" desc:"commands in flight, awaiting a retry or waiting for Stopped, across all workers (default and least: BCCSTOP_COMMANDS_MAX_MSGS, so waiting commands never keep new ones from being delivered)"`

	WorkerID  string `envconfig:"BCCSTOP_WORKER_ID" desc:"name of this worker in result events (default: host name)"`
	LogFormat string `envconfig:"BCCSTOP_LOG_FORMAT" default:"json" desc:"json or text"`
	LogLevel  string `envconfig:"BCCSTOP_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	PProf     bool   `envconfig:"BCCSTOP_PPROF" default:"false" desc:"serve /debug/pprof on BCCSTOP_HTTP_ADDR"`
}

// secretFiles are the variables that may also be given as <NAME>_FILE.
var secretFiles = []string{"BCE_ACCESS_KEY_ID", "BCE_SECRET_ACCESS_KEY", "BCE_SESSION_TOKEN", "NATS_PASSWORD", "NATS_TOKEN"}

// LoadWorker reads and checks the worker configuration from the environment.
func LoadWorker() (Worker, error) {
	var w Worker
	if err := load(&w); err != nil {
		return w, err
	}
	if w.WorkerID == "" {
		host, _ := os.Hostname()
		w.WorkerID = host
		if w.WorkerID == "" {
			w.WorkerID = "worker-" + strconv.Itoa(os.Getpid())
		}
	}
	return w, w.Validate()
}

// LoadCredentials reads only the BCE credentials (for `bccstop fakebcc`).
func LoadCredentials() (Credentials, error) {
	var c Credentials
	return c, load(&c)
}

// API is what a client of the BCC API needs besides the worker: the
// credentials and endpoints (for `bccstop stop --tag`, which lists
// instances), read from the same variables as the worker's.
type API struct {
	Credentials
	Endpoint  string  `envconfig:"BCC_ENDPOINT" default:"https://bcc.bj.baidubce.com"`
	Endpoints Regions `envconfig:"BCC_ENDPOINTS"`
}

// LoadAPI reads and checks the API settings.
func LoadAPI() (API, error) {
	var a API
	if err := load(&a); err != nil {
		return a, err
	}
	switch {
	case a.AccessKeyID == "":
		return a, errors.New("BCE_ACCESS_KEY_ID is not set (nor BCE_ACCESS_KEY_ID_FILE): listing instances by tag, and describing them in a dry run, needs BCE credentials")
	case a.SecretAccessKey == "":
		return a, errors.New("BCE_SECRET_ACCESS_KEY is not set (nor BCE_SECRET_ACCESS_KEY_FILE): listing instances by tag, and describing them in a dry run, needs BCE credentials")
	}
	return a, validEndpoints(a.Endpoint, a.Endpoints)
}

// LoadMaxTargets reads BCCSTOP_MAX_TARGETS, the default of bccstop stop
// --max-targets (0: no cap).
func LoadMaxTargets() (int, error) {
	var m struct {
		MaxTargets int `envconfig:"BCCSTOP_MAX_TARGETS" default:"0"`
	}
	if err := load(&m); err != nil {
		return 0, err
	}
	if m.MaxTargets < 0 {
		return 0, fmt.Errorf("BCCSTOP_MAX_TARGETS: must be 0 (no cap) or a positive count, got %d", m.MaxTargets)
	}
	return m.MaxTargets, nil
}

// LoadProtected reads BCCSTOP_PROTECTED_INSTANCES as the worker does, so
// the command line never targets what the workers would refuse.
func LoadProtected() (InstanceIDs, error) {
	var p struct {
		Protected InstanceIDs `envconfig:"BCCSTOP_PROTECTED_INSTANCES"`
	}
	err := load(&p)
	return p.Protected, err
}

// LoadNATS reads only the NATS connection settings (for `bccstop stop`).
func LoadNATS() (NATS, error) {
	var n NATS
	return n, load(&n)
}

func load(spec any) error {
	if err := envconfig.Process("", spec); err != nil {
		return explain(err)
	}
	return applySecretFiles(spec)
}

// explain turns envconfig's error into one line naming the variable.
func explain(err error) error {
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		what := pe.TypeName
		switch pe.TypeName {
		case "int":
			what = "a whole number"
		case "float64":
			what = "a number"
		case "bool":
			what = "true or false"
		case "Duration", "time.Duration":
			what = "a duration like 30s"
		}
		inner := pe.Err.Error()
		if _, ok := pe.Err.(*strconv.NumError); ok || strings.HasSuffix(pe.TypeName, "Duration") {
			return fmt.Errorf("%s: %q is not %s", pe.KeyName, pe.Value, what)
		}
		return fmt.Errorf("%s: %s", pe.KeyName, inner)
	}
	return err
}

// applySecretFiles fills each secret from <NAME>_FILE when that is set.
func applySecretFiles(spec any) error {
	v := reflect.ValueOf(spec).Elem()
	for _, name := range secretFiles {
		path, ok := os.LookupEnv(name + "_FILE")
		if !ok || path == "" {
			continue
		}
		field, found := fieldByEnv(v, name)
		if !found {
			continue
		}
		if os.Getenv(name) != "" {
			return fmt.Errorf("%s and %s_FILE are both set; set only one", name, name)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("%s_FILE: cannot read %s: %v", name, path, unwrapPathError(err))
		}
		// Surrounding white space (a trailing newline, an editor's spaces or
		// tabs) is never part of a key, token or password.
		value := strings.TrimSpace(string(raw))
		if value == "" {
			return fmt.Errorf("%s_FILE: %s is empty", name, path)
		}
		field.SetString(value)
	}
	return nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fieldByEnv(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("envconfig") == "" {
			if fv, ok := fieldByEnv(v.Field(i), name); ok {
				return fv, true
			}
			continue
		}
		if f.Tag.Get("envconfig") == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// Validate checks the values envconfig cannot: ranges, formats and
// combinations. The error names the variable.
func (w Worker) Validate() error {
	switch {
	case w.AccessKeyID == "":
		return errors.New("BCE_ACCESS_KEY_ID is not set (nor BCE_ACCESS_KEY_ID_FILE): the worker needs BCE credentials")
	case w.SecretAccessKey == "":
		return errors.New("BCE_SECRET_ACCESS_KEY is not set (nor BCE_SECRET_ACCESS_KEY_FILE): the worker needs BCE credentials")
	case w.Concurrency < 1 || w.Concurrency > 10000:
		return fmt.Errorf("BCCSTOP_CONCURRENCY: must be between 1 and 10000, got %d", w.Concurrency)
	case w.MaxDeliver < 1 || w.MaxDeliver > worker.MaxMaxDeliver:
		return fmt.Errorf("BCCSTOP_MAX_DELIVER: must be between 1 and %d, got %d", worker.MaxMaxDeliver, w.MaxDeliver)
	case len(w.Backoff) == 0:
		return errors.New("BCCSTOP_BACKOFF: needs at least one delay, like 1s,5s,30s")
	case w.AckWait < time.Second:
		return fmt.Errorf("BCCSTOP_ACK_WAIT: must be at least 1s, got %s", w.AckWait)
	case w.CallTimeout <= 0:
		return fmt.Errorf("BCCSTOP_CALL_TIMEOUT: must be positive, got %s", w.CallTimeout)
	case math.IsNaN(w.RateLimit) || math.IsInf(w.RateLimit, 0):
		return fmt.Errorf("BCCSTOP_RATE_LIMIT: must be a number of calls per second, got %v", w.RateLimit)
	case w.RateLimit < 0 || w.RateLimit > 1e6:
		return fmt.Errorf("BCCSTOP_RATE_LIMIT: must be 0 (no limit) or a rate up to 1000000 calls per second, got %v", w.RateLimit)
	case w.ShutdownTimeout <= 0:
		return fmt.Errorf("BCCSTOP_SHUTDOWN_TIMEOUT: must be positive, got %s", w.ShutdownTimeout)
	case w.Replicas < 1 || w.Replicas > 5:
		return fmt.Errorf("BCCSTOP_REPLICAS: must be between 1 and 5, got %d", w.Replicas)
	case w.LedgerTTL < max(worker.MinLedgerTTL, 2*w.AckWait):
		return fmt.Errorf("BCCSTOP_LEDGER_TTL: must be at least %s and twice BCCSTOP_ACK_WAIT (%s): a command whose acknowledgement was lost comes back after the ack wait and must find its outcome; got %s",
			worker.MinLedgerTTL, w.AckWait, w.LedgerTTL)
	case w.ResultsMaxAge < w.LedgerTTL:
		return fmt.Errorf("BCCSTOP_RESULTS_MAX_AGE: must be at least BCCSTOP_LEDGER_TTL (%s), got %s", w.LedgerTTL, w.ResultsMaxAge)
	case w.MaxAckPending != 0 && int64(w.MaxAckPending) < w.CommandsMaxMsgs:
		return fmt.Errorf("BCCSTOP_MAX_ACK_PENDING: must be at least BCCSTOP_COMMANDS_MAX_MSGS (%d), got %d: below it, commands waiting for Stopped could keep an incident's new commands from being delivered",
			w.CommandsMaxMsgs, w.MaxAckPending)
	case w.LogFormat != "json" && w.LogFormat != "text":
		return fmt.Errorf("BCCSTOP_LOG_FORMAT: must be json or text, got %q", w.LogFormat)
	}
	if _, err := ParseLogLevel(w.LogLevel); err != nil {
		return fmt.Errorf("BCCSTOP_LOG_LEVEL: %v", err)
	}
	for _, n := range []struct{ name, value string }{{"BCCSTOP_COMMANDS_STREAM", w.CommandsStream}, {"BCCSTOP_LEGACY_COMMANDS_STREAM", w.LegacyStream},
		{"BCCSTOP_RESULTS_STREAM", w.ResultsStream}, {"BCCSTOP_CONSUMER", w.Consumer}, {"BCCSTOP_LEDGER_BUCKET", w.LedgerBucket}} {
		if !validName(n.value) {
			return fmt.Errorf("%s: %q is not a valid JetStream name (letters, digits, '-' and '_')", n.name, n.value)
		}
	}
	if w.CommandsStream == w.LegacyStream {
		return fmt.Errorf("BCCSTOP_COMMANDS_STREAM: %s is the commands stream of releases before layout 2 (BCCSTOP_LEGACY_COMMANDS_STREAM); name the new one otherwise, for example %s_V2, and the worker carries the old one over",
			w.CommandsStream, w.CommandsStream)
	}
	if w.CommandsMaxBytes < 1<<20 {
		return fmt.Errorf("BCCSTOP_COMMANDS_MAX_BYTES: must be at least 1048576 (1 MiB), got %d", w.CommandsMaxBytes)
	}
	if w.CommandsMaxMsgs < 1000 {
		return fmt.Errorf("BCCSTOP_COMMANDS_MAX_MSGS: must be at least 1000, got %d", w.CommandsMaxMsgs)
	}
	if err := validEndpoints(w.Endpoint, w.Endpoints); err != nil {
		return err
	}
	if w.MaxCommandAge < 0 {
		return fmt.Errorf("BCCSTOP_MAX_COMMAND_AGE: must be 0 (no limit) or positive, got %s", w.MaxCommandAge)
	}
	if w.ResultsMaxBytes < 1<<20 {
		return fmt.Errorf("BCCSTOP_RESULTS_MAX_BYTES: must be at least 1048576 (1 MiB), got %d", w.ResultsMaxBytes)
	}
	if w.StopWaitTimeout <= 0 {
		return fmt.Errorf("BCCSTOP_STOP_WAIT_TIMEOUT: must be positive, got %s", w.StopWaitTimeout)
	}
	if w.MaxStops != "" {
		if _, _, err := guard.ParseBudget(w.MaxStops); err != nil {
			return fmt.Errorf("BCCSTOP_MAX_STOPS: %v", err)
		}
	}
	if len(w.StopWaitIntervals) == 0 {
		return errors.New("BCCSTOP_STOP_WAIT_INTERVALS: needs at least one interval, like 2s,5s,10s,15s")
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validEndpoints checks BCC_ENDPOINT and every region of BCC_ENDPOINTS.
func validEndpoints(endpoint string, regions Regions) error {
	if err := validEndpoint(endpoint); err != nil {
		return fmt.Errorf("BCC_ENDPOINT: %v", err)
	}
	for _, region := range sortedKeys(regions) {
		if err := validEndpoint(regions[region]); err != nil {
			return fmt.Errorf("BCC_ENDPOINTS: region %s: %v", region, err)
		}
	}
	return nil
}

// validEndpoint applies the client's own rules: https://, or http:// on a
// loopback host only, and no path.
func validEndpoint(raw string) error {
	_, err := bcc.ParseEndpoint(raw)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "bcc: "))
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
