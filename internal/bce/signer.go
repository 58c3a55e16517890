package bce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// AuthVersion prefixes every authorization string.
	AuthVersion = "bce-auth-v1"
	// DefaultExpiration is how long a signature stays valid, as in Baidu's SDKs.
	DefaultExpiration = 1800 * time.Second

	headerDate          = "X-Bce-Date"
	headerSecurityToken = "X-Bce-Security-Token"
	headerAuthorization = "Authorization"

	// timestampLayout is ISO 8601 in UTC with second precision, as BCE wants.
	timestampLayout = "2006-01-02T15:04:05Z"
)

// Signer signs HTTP requests with bce-auth-v1. It is safe for concurrent use;
// the zero value is not usable, use NewSigner.
type Signer struct {
	creds      Credentials
	expiration int64 // seconds
	key        atomic.Pointer[signingKey]
}

// NewSigner returns a Signer for creds whose signatures expire after
// expiration (DefaultExpiration when zero or negative).
func NewSigner(creds Credentials, expiration time.Duration) *Signer {
	if expiration <= 0 {
		expiration = DefaultExpiration
	}
	return &Signer{creds: creds, expiration: int64(expiration / time.Second)}
}

// signingKey is everything derived from the credentials and one timestamp
// second; it is reused by every signature made within that second.
type signingKey struct {
	unix   int64
	date   string // timestampLayout
	prefix string // "bce-auth-v1/{ak}/{date}/{expiration}/"
	macs   sync.Pool
}

func (s *Signer) keyFor(t time.Time) *signingKey {
	unix := t.Unix()
	if k := s.key.Load(); k != nil && k.unix == unix {
		return k
	}
	date := time.Unix(unix, 0).UTC().Format(timestampLayout)
	prefix := AuthVersion + "/" + s.creds.AccessKeyID + "/" + date + "/" + strconv.FormatInt(s.expiration, 10)
	keyHex := hmacHex([]byte(s.creds.SecretAccessKey), prefix)
	k := &signingKey{unix: unix, date: date, prefix: prefix + "/"}
	k.macs.New = func() any { return hmac.New(sha256.New, []byte(keyHex)) }
	s.key.Store(k)
	return k
}

func hmacHex(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// Sign signs req for time t, in place: it sets X-Bce-Date, X-Bce-Security-Token
// when the credentials carry a session token, and Authorization. The signed
// headers are host (exactly as sent, with the port when there is one),
// content-length (from req.ContentLength when the body is non-empty),
// content-type, content-md5 and every x-bce-* header but x-bce-request-id.
// Call it again, with a fresh time, for every attempt.
func (s *Signer) Sign(req *http.Request, t time.Time) {
	k := s.keyFor(t)
	req.Header[headerDate] = []string{k.date}
	if s.creds.SessionToken != "" {
		req.Header[headerSecurityToken] = []string{s.creds.SessionToken}
	}
	delete(req.Header, headerAuthorization)
	b := getBuffers()
	defer putBuffers(b)
	signed := appendCanonicalRequest(b, requestView{req: req, client: true}, nil)
	req.Header[headerAuthorization] = []string{s.authorization(k, b, signed)}
}

// authorization computes the signature of the canonical request in b.canon
// and returns the full authorization string.
func (s *Signer) authorization(k *signingKey, b *buffers, signedHeaders []byte) string {
	mac := k.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write(b.canon)
	b.sum = mac.Sum(b.sum[:0])
	k.macs.Put(mac)

	out := append(b.out[:0], k.prefix...)
	out = append(out, signedHeaders...)
	out = append(out, '/')
	out = hex.AppendEncode(out, b.sum)
	b.out = out
	return string(out)
}

// buffers are the scratch space of one signature, pooled so a signature
// costs a handful of allocations.
type buffers struct {
	canon   []byte // the canonical request
	scratch []byte // encoded query parameters and header lines before sorting
	signed  []byte // "host;x-bce-date"
	out     []byte // the authorization string
	sum     []byte // the HMAC
	spans   []span // segments of scratch to sort
	// rawNames holds the lower-case names of the signed headers, nameSpans
	// their segments.
	rawNames  []byte
	nameSpans []span
}

type span struct{ start, end int }

var bufferPool = sync.Pool{New: func() any {
	return &buffers{
		canon: make([]byte, 0, 512), scratch: make([]byte, 0, 256), signed: make([]byte, 0, 64),
		out: make([]byte, 0, 256), sum: make([]byte, 0, sha256.Size),
		spans: make([]span, 0, 16), rawNames: make([]byte, 0, 128), nameSpans: make([]span, 0, 16),
	}
}}

func getBuffers() *buffers  { return bufferPool.Get().(*buffers) }
func putBuffers(b *buffers) { bufferPool.Put(b) }

// requestView reads a request the way it goes over the wire. A client-side
// request keeps its host in Host or URL.Host and its length in
// ContentLength; a server-side one has Content-Length among its headers.
type requestView struct {
	req    *http.Request
	client bool
}

func (v requestView) host() string {
	if v.req.Host != "" {
		return v.req.Host
	}
	return v.req.URL.Host
}

func (v requestView) contentLength() string {
	if v.client {
		if v.req.ContentLength > 0 {
			return strconv.FormatInt(v.req.ContentLength, 10)
		}
		return ""
	}
	return firstValue(v.req.Header, "Content-Length")
}

// header returns the value of lname (lower case) as it is sent.
func (v requestView) header(lname string) string {
	switch lname {
	case "host":
		return v.host()
	case "content-length":
		return v.contentLength()
	}
	return firstValue(v.req.Header, http.CanonicalHeaderKey(lname))
}

func firstValue(h http.Header, key string) string {
	if vs := h[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// appendCanonicalRequest writes the canonical request of v into b.canon and
// returns the signed-headers field. With only == nil the headers are chosen
// as Baidu's SDKs choose them; otherwise exactly the lower-case names in only
// are signed (that is how a server verifies what a client chose).
func appendCanonicalRequest(b *buffers, v requestView, only []string) []byte {
	c := append(b.canon[:0], v.req.Method...)
	c = append(c, '\n')
	c = append(c, '/')
	c = appendURIEncode(c, strings.TrimPrefix(v.req.URL.Path, "/"), false)
	c = append(c, '\n')
	c = appendCanonicalQuery(c, b, v.req.URL.RawQuery)
	c = append(c, '\n')
	c, signed := appendCanonicalHeaders(c, b, v, only)
	b.canon = c
	return signed
}

// appendCanonicalQuery writes the sorted, encoded "key=value" pairs of a raw
// query, joined by '&'; a key without value is rendered "key=".
func appendCanonicalQuery(c []byte, b *buffers, rawQuery string) []byte {
	sc := b.scratch[:0]
	spans := b.spans[:0]
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if pair == "" {
			continue
		}
		k, val, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(val)
		if err1 != nil || err2 != nil || strings.EqualFold(k, "authorization") {
			continue
		}
		start := len(sc)
		sc = appendURIEncode(sc, k, true)
		sc = append(sc, '=')
		sc = appendURIEncode(sc, val, true)
		spans = append(spans, span{start: start, end: len(sc)})
	}
	sortSpans(sc, spans)
	for i, sp := range spans {
		if i > 0 {
			c = append(c, '&')
		}
		c = append(c, sc[sp.start:sp.end]...)
	}
	b.scratch, b.spans = sc, spans
	return c
}

// appendCanonicalHeaders writes the sorted "name:value" lines (both
// URI-encoded, value trimmed, joined by '\n') and returns the sorted
// signed-header names joined by ';'.
func appendCanonicalHeaders(c []byte, b *buffers, v requestView, only []string) ([]byte, []byte) {
	sc := b.scratch[:0]
	spans := b.spans[:0]
	raw := b.rawNames[:0]
	nameSpans := b.nameSpans[:0]
	add := func(name, value string) {
		value = strings.TrimSpace(value)
		if value == "" {
			return
		}
		nameStart := len(raw)
		raw = appendLower(raw, name)
		nameSpans = append(nameSpans, span{start: nameStart, end: len(raw)})
		start := len(sc)
		sc = appendURIEncode(sc, unsafeString(raw[nameStart:]), true)
		sc = append(sc, ':')
		sc = appendURIEncode(sc, value, true)
		spans = append(spans, span{start: start, end: len(sc)})
	}
	if only != nil {
		for _, name := range only {
			add(name, v.header(name))
		}
	} else {
		add("host", v.host())
		add("content-length", v.contentLength())
		for key, values := range v.req.Header {
			if len(values) == 0 || !signedByDefault(key) {
				continue
			}
			add(key, values[0])
		}
	}
	sortSpans(sc, spans)
	for i, sp := range spans {
		if i > 0 {
			c = append(c, '\n')
		}
		c = append(c, sc[sp.start:sp.end]...)
	}
	// The signed-headers field lists the lower-case names, not encoded,
	// sorted by name alone (which can differ from the order of the lines).
	sortSpans(raw, nameSpans)
	signed := b.signed[:0]
	for i, sp := range nameSpans {
		if i > 0 {
			signed = append(signed, ';')
		}
		signed = append(signed, raw[sp.start:sp.end]...)
	}
	b.scratch, b.spans, b.rawNames, b.nameSpans, b.signed = sc, spans, raw, nameSpans, signed
	return c, signed
}

// signedByDefault reports whether a header (in any case) is signed when the
// client chooses: content-type, content-md5 and x-bce-* but x-bce-request-id.
// host and content-length are handled by the caller, since Go keeps them
// out of the header map on the client side.
func signedByDefault(key string) bool {
	switch {
	case strings.EqualFold(key, "Content-Type"), strings.EqualFold(key, "Content-Md5"):
		return true
	case len(key) > 6 && strings.EqualFold(key[:6], "x-bce-"):
		return !strings.EqualFold(key, "x-bce-request-id")
	}
	return false
}

// appendURIEncode percent-encodes s as RFC 3986 wants: unreserved
// characters stay, everything else becomes %XX (upper case); '/' stays when
// encodeSlash is false.
func appendURIEncode(dst []byte, s string, encodeSlash bool) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && !encodeSlash {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// sortSpans sorts segments of buf by their bytes; insertion sort, since a
// request has a handful of headers and query parameters and this allocates
// nothing.
func sortSpans(buf []byte, spans []span) {
	for i := 1; i < len(spans); i++ {
		for j := i; j > 0 && string(buf[spans[j].start:spans[j].end]) < string(buf[spans[j-1].start:spans[j-1].end]); j-- {
			spans[j], spans[j-1] = spans[j-1], spans[j]
		}
	}
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// ErrMalformedAuthorization and the errors below are returned by Verify.
var (
	ErrMissingAuthorization   = errors.New("bce: no Authorization header")
	ErrMalformedAuthorization = errors.New("bce: malformed Authorization header")
	ErrUnknownAccessKey       = errors.New("bce: unknown access key id")
	ErrRequestExpired         = errors.New("bce: request timestamp is outside its validity window")
	ErrSignatureMismatch      = errors.New("bce: signature does not match")
	ErrHostNotSigned          = errors.New("bce: host header is not signed")
	ErrTokenMismatch          = errors.New("bce: security token does not match")
)

// MaxClockSkew is how far in the future a signature timestamp may lie.
const MaxClockSkew = 15 * time.Minute

// Verify checks the bce-auth-v1 signature of a server-side request against
// creds at time now; see Verifier.Verify. A server checking many requests
// should keep a Verifier instead.
func Verify(req *http.Request, creds Credentials, now time.Time) error {
	return NewVerifier(creds).Verify(req, now)
}

// Verifier checks signatures made with one set of credentials. It keeps the
// derived signing keys, so checking a request costs about as much as
// signing one. It is safe for concurrent use.
type Verifier struct {
	creds   Credentials
	mu      sync.Mutex
	signers map[int64]*Signer // by expiration, in seconds
}

// NewVerifier returns a Verifier for creds.
func NewVerifier(creds Credentials) *Verifier {
	return &Verifier{creds: creds, signers: map[int64]*Signer{}}
}

func (v *Verifier) signer(exp int64) *Signer {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.signers[exp]
	if !ok {
		if len(v.signers) > 64 { // expirations are few in practice; bound the map anyway
			clear(v.signers)
		}
		s = NewSigner(v.creds, time.Duration(exp)*time.Second)
		v.signers[exp] = s
	}
	return s
}

// Verify checks the bce-auth-v1 signature of a server-side request at time
// now, as the BCE service does: the access key must match, the timestamp
// must lie within [now-expiration, now+MaxClockSkew], host must be signed, a
// session token (when the credentials have one) must be sent and signed,
// and the signature over exactly the headers the client listed must match.
func (v *Verifier) Verify(req *http.Request, now time.Time) error {
	creds := v.creds
	auth := req.Header.Get(headerAuthorization)
	if auth == "" {
		return ErrMissingAuthorization
	}
	parts := strings.Split(auth, "/")
	if len(parts) != 6 || parts[0] != AuthVersion {
		return ErrMalformedAuthorization
	}
	ak, date, expStr, signedField, signature := parts[1], parts[2], parts[3], parts[4], parts[5]
	if ak != creds.AccessKeyID {
		return ErrUnknownAccessKey
	}
	ts, err := time.Parse(timestampLayout, date)
	exp, err2 := strconv.ParseInt(expStr, 10, 64)
	if err != nil || err2 != nil || exp <= 0 || signedField == "" {
		return ErrMalformedAuthorization
	}
	if now.After(ts.Add(time.Duration(exp)*time.Second)) || ts.After(now.Add(MaxClockSkew)) {
		return ErrRequestExpired
	}
	only := strings.Split(signedField, ";")
	hostSigned, tokenSigned := false, false
	for _, name := range only {
		hostSigned = hostSigned || name == "host"
		tokenSigned = tokenSigned || name == "x-bce-security-token"
	}
	if !hostSigned {
		return ErrHostNotSigned
	}
	if creds.SessionToken != "" {
		if !tokenSigned || !hmac.Equal([]byte(req.Header.Get(headerSecurityToken)), []byte(creds.SessionToken)) {
			return ErrTokenMismatch
		}
	}
	s := v.signer(exp)
	b := getBuffers()
	defer putBuffers(b)
	appendCanonicalRequest(b, requestView{req: req}, only)
	want := s.authorization(s.keyFor(ts), b, []byte(signedField))
	if !hmac.Equal([]byte(want[strings.LastIndexByte(want, '/')+1:]), []byte(signature)) {
		return ErrSignatureMismatch
	}
	return nil
}
