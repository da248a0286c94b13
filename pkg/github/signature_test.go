package github

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// GitHub's documented test vector (validating-webhook-deliveries).
const (
	vectorSecret = "It's a Secret to Everybody"
	vectorBody   = "Hello, World!"
	vectorHeader = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
)

func TestDocumentedVector(t *testing.T) {
	if got := Sign([]byte(vectorBody), []byte(vectorSecret)); got != vectorHeader {
		t.Errorf("Sign(%q) = %q; want %q", vectorBody, got, vectorHeader)
	}
	sum, err := ParseSignature(vectorHeader)
	if err != nil {
		t.Fatalf("ParseSignature(%q) = %v", vectorHeader, err)
	}
	if err := Verify(sum, []byte(vectorBody), [][]byte{[]byte("an older secret, rotated out"), []byte(vectorSecret)}); err != nil {
		t.Errorf("Verify(vector) = %v; want nil", err)
	}
	if err := Verify(sum, []byte(vectorBody+" "), [][]byte{[]byte(vectorSecret)}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(changed body) = %v; want ErrBadSignature", err)
	}
	if err := Verify(sum, []byte(vectorBody), nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Verify(no secrets) = %v; want ErrBadSignature", err)
	}
}

func TestParseSignature(t *testing.T) {
	for _, h := range []string{"", "sha256=", "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1", // 63 digits
		"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043eZZ",
		"757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"} {
		if _, err := ParseSignature(h); !errors.Is(err, ErrMalformedSig) {
			t.Errorf("ParseSignature(%q) = %v; want ErrMalformedSig", h, err)
		}
	}
}

// FuzzVerify: Verify accepts exactly the signature Sign makes. A
// signature made with the secret verifies (alone or among other secrets),
// never a different body, never under a different secret; a header that
// parses and verifies is Sign's value (up to hex case and surrounding
// space); ParseSignature accepts only sha256=<64 hex digits>; nothing
// panics. Seeds: GitHub's documented vector, the fixtures' payloads
// (signed and with a wrong signature) and testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(vectorBody), []byte(vectorSecret), vectorHeader)
	f.Add([]byte(vectorBody), []byte(vectorSecret), strings.ToUpper(vectorHeader[7:]))
	f.Add([]byte(vectorBody), []byte(vectorSecret), "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59")
	f.Add([]byte(""), []byte(""), Sign(nil, nil))
	for i, fx := range testenv.Fixtures(f) {
		b, err := os.ReadFile(fx.Path)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 4096 && i%4 != 0 {
			continue // a few large payloads are enough; the engine mutates small inputs better
		}
		f.Add(b, []byte("a-real-secret-of-some-length-0123"), Sign(b, []byte("a-real-secret-of-some-length-0123")))
		f.Add(b, []byte("secret"), " "+Sign(append(b, ' '), []byte("secret"))+" ")
	}
	f.Fuzz(func(t *testing.T, body, secret []byte, header string) {
		signed := Sign(body, secret)
		if sum, err := ParseSignature(header); err == nil {
			if len(sum) != 32 {
				t.Fatalf("ParseSignature(%q) = %d bytes; want 32", header, len(sum))
			}
			if norm := strings.ToLower(strings.TrimSpace(header)); norm != "sha256="+hex.EncodeToString(sum) {
				t.Fatalf("ParseSignature(%q) accepted a header that is not sha256=<hex of the sum>", header)
			}
			if ok := Verify(sum, body, [][]byte{secret}) == nil; ok != (strings.ToLower(strings.TrimSpace(header)) == signed) {
				t.Fatalf("Verify(ParseSignature(%q)) = %v, but Sign() = %q", header, ok, signed)
			}
		} else if !errors.Is(err, ErrMalformedSig) {
			t.Fatalf("ParseSignature(%q) = %v; want ErrMalformedSig", header, err)
		}
		sum, err := ParseSignature(signed)
		if err != nil {
			t.Fatalf("ParseSignature(Sign()) = %v", err)
		}
		if err := Verify(sum, body, [][]byte{secret}); err != nil {
			t.Fatalf("Verify(Sign(body)) = %v", err)
		}
		other := append(bytes.Clone(secret), 'x')
		if err := Verify(sum, body, [][]byte{other, secret}); err != nil {
			t.Fatalf("Verify(Sign(body)) with the secret second of two = %v", err)
		}
		if err := Verify(sum, body, [][]byte{other}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("a signature verified under a different secret: %v", err)
		}
		if err := Verify(sum, append(bytes.Clone(body), 'x'), [][]byte{secret}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("a signature verified a different body: %v", err)
		}
		if len(body) > 0 {
			flipped := bytes.Clone(body)
			flipped[len(flipped)/2] ^= 1
			if Verify(sum, flipped, [][]byte{secret}) == nil {
				t.Fatalf("a signature verified a body with one bit changed")
			}
		}
		bad := bytes.Clone(sum)
		bad[0] ^= 0x80
		if Verify(bad, body, [][]byte{secret}) == nil || Verify(sum[:31], body, [][]byte{secret}) == nil || Verify(nil, body, [][]byte{secret}) == nil {
			t.Fatalf("Verify accepted a signature other than Sign's")
		}
	})
}
