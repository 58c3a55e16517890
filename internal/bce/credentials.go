// Package bce implements Baidu Cloud's bce-auth-v1 request signature, as
// Baidu's SDKs compute it, and its verification for the API simulator.
package bce

// Credentials are an access key pair and, for temporary (STS) credentials,
// a session token. String and GoString never print the secret or the token,
// so a Credentials value can be logged or wrapped in an error safely.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// String shows the access key id only.
func (c Credentials) String() string {
	s := "bce.Credentials{AccessKeyID: " + c.AccessKeyID + ", SecretAccessKey: [redacted]"
	if c.SessionToken != "" {
		s += ", SessionToken: [redacted]"
	}
	return s + "}"
}

// GoString is String, so %#v redacts too.
func (c Credentials) GoString() string { return c.String() }

// Valid reports whether both halves of the key pair are set.
func (c Credentials) Valid() bool { return c.AccessKeyID != "" && c.SecretAccessKey != "" }
