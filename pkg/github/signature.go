// Package github holds what dh-deployer needs of GitHub's webhook
// protocol: the X-Hub-Signature-256 check, delivery header rules, and the
// payload fields the stages read.
//
// Verify compares in constant time and accepts a signature made with any
// of several secrets (for rotation). The SHA-1 X-Hub-Signature is never
// accepted on its own.
package github

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
)

// Header names, as GitHub documents them (Go canonicalises them anyway).
const (
	HeaderSignature256 = "X-Hub-Signature-256"
	HeaderSignature1   = "X-Hub-Signature"
	HeaderEvent        = "X-GitHub-Event"
	HeaderDelivery     = "X-GitHub-Delivery"
	HeaderHookID       = "X-GitHub-Hook-ID"
)

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("missing " + HeaderSignature256 + " header")
	ErrSHA1Only     = errors.New("only the SHA-1 " + HeaderSignature1 + " header was sent; " + HeaderSignature256 + " is required")
	ErrBadSignature = errors.New("signature does not match the payload")
	ErrMalformedSig = errors.New(HeaderSignature256 + " is not of the form sha256=<64 hex digits>")
)

// Sign returns the X-Hub-Signature-256 value of body under secret.
func Sign(body, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ParseSignature decodes an X-Hub-Signature-256 value.
func ParseSignature(header string) ([]byte, error) {
	hexsum, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok || len(hexsum) != 2*sha256.Size {
		return nil, ErrMalformedSig
	}
	sum, err := hex.DecodeString(hexsum)
	if err != nil {
		return nil, ErrMalformedSig
	}
	return sum, nil
}

// Verify checks a decoded signature against body under each secret, in
// constant time for each. It returns nil if any secret matches.
func Verify(sum, body []byte, secrets [][]byte) error {
	v := NewVerifier(secrets)
	v.Write(body)
	return v.Verify(sum)
}

// Verifier computes the HMAC-SHA256 of a body under every secret while the
// body streams through Write, so a body is checked without being held in
// memory. Its zero value is not usable: call NewVerifier.
type Verifier struct{ macs []hash.Hash }

// NewVerifier returns a Verifier for secrets.
func NewVerifier(secrets [][]byte) *Verifier {
	v := &Verifier{}
	for _, s := range secrets {
		v.macs = append(v.macs, hmac.New(sha256.New, s))
	}
	return v
}

// Reset forgets the body written so far, keeping the secrets: a Verifier
// reused this way costs less than a new one (crypto/hmac restores its
// keyed state instead of hashing the key again).
func (v *Verifier) Reset() {
	for _, m := range v.macs {
		m.Reset()
	}
}

// Write adds p to the body; it never fails.
func (v *Verifier) Write(p []byte) (int, error) {
	for _, m := range v.macs {
		m.Write(p)
	}
	return len(p), nil
}

// Verify checks a decoded signature against the body written so far under
// each secret, in constant time for each, and returns nil if any matches
// (else ErrBadSignature).
func (v *Verifier) Verify(sum []byte) error {
	ok := 0
	for _, m := range v.macs {
		if hmac.Equal(m.Sum(nil), sum) {
			ok = 1
		}
	}
	if ok == 0 {
		return ErrBadSignature
	}
	return nil
}
