package github

import (
	"bytes"
	"errors"
	"os"
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

func TestValidGUID(t *testing.T) {
	for s, want := range map[string]bool{
		"72d3162e-cc78-11e3-81ab-4c9367dc0958": true, "D4049330-377E-11ED-9C2E-1AE286AAB35F": true,
		"": false, "72d3162e": false, "../../etc/passwd": false, "72d3162e-cc78-11e3-81ab-4c9367dc0958\n": false,
	} {
		if got := ValidGUID(s); got != want {
			t.Errorf("ValidGUID(%q) = %v; want %v", s, got, want)
		}
	}
}

// FuzzVerify: a signature made with the secret always verifies, the same
// signature never verifies a different body, and nothing panics.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(vectorBody), []byte(vectorSecret), vectorHeader)
	for _, fx := range testenv.Fixtures(f) {
		if b, err := os.ReadFile(fx.Path); err == nil && len(b) < 4096 {
			f.Add(b, []byte("secret"), "sha256=00")
		}
	}
	f.Fuzz(func(t *testing.T, body, secret []byte, header string) {
		if sum, err := ParseSignature(header); err == nil {
			Verify(sum, body, [][]byte{secret})
		}
		sum, err := ParseSignature(Sign(body, secret))
		if err != nil {
			t.Fatalf("ParseSignature(Sign()) = %v", err)
		}
		if err := Verify(sum, body, [][]byte{secret}); err != nil {
			t.Fatalf("Verify(Sign(body)) = %v", err)
		}
		other := append(bytes.Clone(body), 'x')
		if Verify(sum, other, [][]byte{secret}) == nil {
			t.Fatalf("a signature verified a different body")
		}
	})
}
