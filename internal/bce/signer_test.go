package bce

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	sdkauth "github.com/baidubce/bce-sdk-go/auth"
	sdkhttp "github.com/baidubce/bce-sdk-go/http"
)

type vector struct {
	Name              string            `json:"name"`
	AccessKeyID       string            `json:"accessKeyId"`
	SecretAccessKey   string            `json:"secretAccessKey"`
	SessionToken      string            `json:"sessionToken"`
	Timestamp         string            `json:"timestamp"`
	ExpirationSeconds int               `json:"expirationSeconds"`
	Method            string            `json:"method"`
	Path              string            `json:"path"`
	Query             map[string]string `json:"query"`
	Body              string            `json:"body"`
	Headers           map[string]string `json:"headers"`
	SignedHeaders     []string          `json:"signedHeaders"`
	SigningKey        string            `json:"signingKey"`
	CanonicalRequest  string            `json:"canonicalRequest"`
	Authorization     string            `json:"authorization"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	raw, err := os.ReadFile("testdata/signing-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Vectors []vector }
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Vectors) == 0 {
		t.Fatal("no vectors")
	}
	return file.Vectors
}

// clientRequest builds the request a client would send for v; the headers
// set by Sign itself (x-bce-date, x-bce-security-token) are left to Sign.
func (v vector) clientRequest(t testing.TB) *http.Request {
	t.Helper()
	q := url.Values{}
	for k, val := range v.Query {
		q.Set(k, val)
	}
	raw := strings.ReplaceAll(q.Encode(), "stop=", "stop") // "?stop", as the worker sends it
	body := v.Body
	if n, _ := strconv.Atoi(v.Headers["Content-Length"]); body == "" && n > 0 {
		body = strings.Repeat("x", n) // the doc example gives a length but no body
	}
	req, err := http.NewRequest(v.Method, "https://placeholder"+v.Path+"?"+raw, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, val := range v.Headers {
		switch strings.ToLower(k) {
		case "host":
			req.Host = val
		case "content-length":
			n, _ := strconv.ParseInt(val, 10, 64)
			req.ContentLength = n
		case "x-bce-date", "x-bce-security-token":
		default:
			req.Header.Set(k, val)
		}
	}
	return req
}

func TestSignMatchesVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			ts, err := time.Parse(time.RFC3339, v.Timestamp)
			if err != nil {
				t.Fatal(err)
			}
			s := NewSigner(Credentials{v.AccessKeyID, v.SecretAccessKey, v.SessionToken}, time.Duration(v.ExpirationSeconds)*time.Second)
			req := v.clientRequest(t)
			s.Sign(req, ts)
			if got := req.Header.Get("Authorization"); got != v.Authorization {
				t.Errorf("authorization\n got %s\nwant %s", got, v.Authorization)
			}
			if got := req.Header.Get("X-Bce-Date"); got != v.Timestamp {
				t.Errorf("x-bce-date = %q, want %q", got, v.Timestamp)
			}
			if v.SessionToken != "" && req.Header.Get("X-Bce-Security-Token") != v.SessionToken {
				t.Errorf("x-bce-security-token not set")
			}
			if v.SigningKey != "" {
				if got := hmacHex([]byte(v.SecretAccessKey), fmt.Sprintf("bce-auth-v1/%s/%s/%d", v.AccessKeyID, v.Timestamp, v.ExpirationSeconds)); got != v.SigningKey {
					t.Errorf("signing key = %s, want %s", got, v.SigningKey)
				}
			}
			if v.CanonicalRequest != "" {
				b := getBuffers()
				signed := appendCanonicalRequest(b, requestView{req: req, client: true}, nil)
				if string(b.canon) != v.CanonicalRequest {
					t.Errorf("canonical request\n got %q\nwant %q", b.canon, v.CanonicalRequest)
				}
				if want := strings.Join(v.SignedHeaders, ";"); string(signed) != want {
					t.Errorf("signed headers = %q, want %q", signed, want)
				}
				putBuffers(b)
			}
		})
	}
}

// TestVerifyAcceptsVectors checks the server side: each vector's request,
// as a server receives it, verifies at its own timestamp.
func TestVerifyAcceptsVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			ts, _ := time.Parse(time.RFC3339, v.Timestamp)
			creds := Credentials{v.AccessKeyID, v.SecretAccessKey, v.SessionToken}
			req := serverSide(t, v.clientRequest(t), func(r *http.Request) { NewSigner(creds, time.Duration(v.ExpirationSeconds)*time.Second).Sign(r, ts) })
			if err := Verify(req, creds, ts.Add(time.Minute)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

// serverSide sends req (after sign) to a test server and returns the request
// as the server saw it, so verification runs on real wire data.
func serverSide(t *testing.T, req *http.Request, sign func(*http.Request)) *http.Request {
	t.Helper()
	seen := make(chan *http.Request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		seen <- r
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	req.URL.Scheme, req.URL.Host = u.Scheme, u.Host
	if req.Host == "" {
		req.Host = u.Host
	}
	sign(req)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return <-seen
}

func TestVerifyRejects(t *testing.T) {
	creds := Credentials{AccessKeyID: "ak", SecretAccessKey: "sk"}
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	signedAt := func(at time.Time, c Credentials) func(*http.Request) {
		return func(r *http.Request) { NewSigner(c, 0).Sign(r, at) }
	}
	newReq := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPut, "http://x/v2/instance/i-abc?stop", strings.NewReader(`{"forceStop":false}`))
		r.Header.Set("Content-Type", "application/json")
		return r
	}
	tests := []struct {
		name   string
		sign   func(*http.Request)
		tamper func(*http.Request)
		want   error
	}{
		{"wrong secret", signedAt(now, Credentials{"ak", "other", ""}), nil, ErrSignatureMismatch},
		{"unknown key", signedAt(now, Credentials{"other", "sk", ""}), nil, ErrUnknownAccessKey},
		{"expired", signedAt(now.Add(-31*time.Minute), creds), nil, ErrRequestExpired},
		{"from the future", signedAt(now.Add(16*time.Minute), creds), nil, ErrRequestExpired},
		{"no authorization", func(*http.Request) {}, nil, ErrMissingAuthorization},
		{"tampered path", signedAt(now, creds), func(r *http.Request) { r.URL.Path = "/v2/instance/i-other" }, ErrSignatureMismatch},
		{"tampered signed header", signedAt(now, creds), func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }, ErrSignatureMismatch},
		{"garbage", func(r *http.Request) { r.Header.Set("Authorization", "Bearer x") }, nil, ErrMalformedAuthorization},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := serverSide(t, newReq(), tc.sign)
			if tc.tamper != nil {
				tc.tamper(req)
			}
			if err := Verify(req, creds, now); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		if err := Verify(serverSide(t, newReq(), signedAt(now, creds)), creds, now); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("session token required", func(t *testing.T) {
		withToken := Credentials{"ak", "sk", "tok"}
		if err := Verify(serverSide(t, newReq(), signedAt(now, creds)), withToken, now); !errors.Is(err, ErrTokenMismatch) {
			t.Fatalf("Verify = %v, want %v", err, ErrTokenMismatch)
		}
		if err := Verify(serverSide(t, newReq(), signedAt(now, withToken)), withToken, now); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCredentialsNeverPrintSecrets(t *testing.T) {
	c := Credentials{AccessKeyID: "AKID", SecretAccessKey: "s3cr3t-value", SessionToken: "t0ken-value"}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c)} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "t0ken") {
			t.Fatalf("secret printed: %s", s)
		}
		if !strings.Contains(s, "AKID") {
			t.Fatalf("access key id missing: %s", s)
		}
	}
}

// TestSignMatchesOfficialSDK compares our signature with the official Go
// SDK's signer over many generated requests: random methods, paths with
// characters that need encoding, query parameters with and without values,
// extra x-bce-* headers, hosts with and without a port, and session tokens.
func TestSignMatchesOfficialSDK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcXYZ019-_.~ /%+=&?:@!*'()中"
	randString := func(n int) string {
		var sb strings.Builder
		for range rng.IntN(n) + 1 {
			r := []rune(alphabet)
			sb.WriteRune(r[rng.IntN(len(r))])
		}
		return sb.String()
	}
	for i := range 2000 {
		creds := Credentials{AccessKeyID: "ak" + strconv.Itoa(i), SecretAccessKey: randString(40)}
		if rng.IntN(3) == 0 {
			creds.SessionToken = randString(30)
		}
		ts := time.Unix(1700000000+rng.Int64N(1e8), 0)
		exp := []int{1800, 60, 3600}[rng.IntN(3)]
		method := []string{"GET", "PUT", "POST", "DELETE"}[rng.IntN(4)]
		path := "/v2/instance/" + randString(12)
		host := []string{"bcc.bj.baidubce.com", "127.0.0.1:8443", "bcc.gz.baidubce.com:443"}[rng.IntN(3)]
		params := map[string]string{}
		for range rng.IntN(4) {
			params[randString(6)] = []string{"", randString(8)}[rng.IntN(2)]
		}
		headers := map[string]string{"Content-Type": "application/json"}
		body := ""
		if method == "PUT" || method == "POST" {
			body = `{"forceStop":true}`
		}
		for range rng.IntN(3) {
			headers["x-bce-"+strings.ToLower(randString(5))] = randString(10)
		}
		headers["X-Bce-Request-Id"] = "not-signed"

		// Ours.
		u := &url.URL{Scheme: "https", Host: host, Path: path}
		q := url.Values{}
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == "" {
			req.Body, req.ContentLength = nil, 0
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		NewSigner(creds, time.Duration(exp)*time.Second).Sign(req, ts)

		// Official SDK, on the same request as it would send it.
		sreq := &sdkhttp.Request{}
		sreq.SetMethod(method)
		sreq.SetUri(path)
		sreq.SetHost(host)
		sreq.SetHeader("Host", host)
		for k, v := range params {
			sreq.SetParam(k, v)
		}
		for k, v := range headers {
			sreq.SetHeader(k, v)
		}
		if body != "" {
			sreq.SetHeader("Content-Length", strconv.Itoa(len(body)))
		}
		sreq.SetHeader("x-bce-date", ts.UTC().Format(timestampLayout))
		sdkCreds, _ := sdkauth.NewSessionBceCredentials(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
		if creds.SessionToken == "" {
			sdkCreds, _ = sdkauth.NewBceCredentials(creds.AccessKeyID, creds.SecretAccessKey)
		}
		(&sdkauth.BceV1Signer{}).Sign(sreq, sdkCreds, &sdkauth.SignOptions{
			HeadersToSign: sdkauth.DEFAULT_HEADERS_TO_SIGN, Timestamp: ts.Unix(), ExpireSeconds: exp,
		})
		if got, want := req.Header.Get("Authorization"), sreq.Header("Authorization"); got != want {
			t.Fatalf("request %d (%s %s?%s host %s):\n ours %s\n sdk  %s", i, method, path, u.RawQuery, host, got, want)
		}
	}
}
