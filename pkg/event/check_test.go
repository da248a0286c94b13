package event

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// oldRule is what CheckPayload checked before PayloadChecker: json.Valid,
// then a '{' first.
func oldRule(p []byte) string {
	if len(p) == 0 || !json.Valid(p) {
		return "entry payload is not valid JSON"
	}
	if t := bytes.TrimLeft(p, " \t\r\n"); t[0] != '{' {
		return "entry payload is not a JSON object"
	}
	return ""
}

// checkInWrites runs a PayloadChecker over p in writes of n bytes.
func checkInWrites(p []byte, n int) string {
	var c PayloadChecker
	for b := p; len(b) > 0; b = b[min(n, len(b)):] {
		c.Write(b[:min(n, len(b))])
	}
	if err := c.Check(); err != nil {
		return err.Error()
	}
	return ""
}

var checkSeeds = []string{
	`{}`, ` {"a":1} `, `{"a":[1,2,{"b":null}],"c":"x\"y\\u00e9\n"}`, `{"n":-0.5e+10,"m":0,"k":1E3}`,
	`[]`, `"x"`, `123`, `-1.5`, `true`, `null`, ``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`, `{"a":tru}`, `{"a":trUe}`, `{} {}`, `{}x`,
	`{"a":"\x01"}`, `{"a":"\q"}`, `{"a":"\u12G4"}`, `{"a":"\u12"}`, `{"a" "b"}`, `{1:2}`, `[1 2]`, `{"a":[}`,
	"\ufeff{}", `{"a":1}]`, `{"a":"é"}`, "{\"a\":\"\xff\"}", `{"a":{"b":{"c":[[[]]]}}}`, `{"a":1e-5}`, `{"a":-01}`,
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestPayloadCheckerMatchesJSONValid(t *testing.T) {
	seeds := checkSeeds
	for _, f := range testenv.Fixtures(t) {
		b, _ := os.ReadFile(f.Path)
		seeds = append(seeds, string(b))
	}
	for _, s := range seeds {
		want := oldRule([]byte(s))
		for _, n := range []int{1, 3, len(s) + 1} {
			if got := checkInWrites([]byte(s), n); got != want {
				t.Errorf("PayloadChecker(%.60q) in writes of %d = %q; want %q", s, n, got, want)
			}
		}
	}
}

// TestPayloadCheckerWordEdges puts each byte that ends, escapes or spoils
// a string, and its neighbours, at every position of the 8-byte words the
// string fast path reads, after plain bytes of every kind (ASCII, UTF-8,
// 0xff), so that a carry or borrow across a word's bytes shows.
func TestPayloadCheckerWordEdges(t *testing.T) {
	var odd []byte
	for b := range 0x20 {
		odd = append(odd, byte(b))
	}
	odd = append(odd, 0x20, 0x21, '"', 0x23, 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xff)
	for _, fill := range []string{"a", "\xc3\xa9", "\xff", " "} {
		for k := range 17 {
			for _, b := range odd {
				for _, tail := range []string{`"}`, `n"}`, `u0041xxxxxxxxxxxxxx"}`, `"xxxxxxxxxxxxxxxxxx"}`} {
					p := []byte(`{"a":"` + strings.Repeat(fill, k) + string([]byte{b}) + tail)
					want := oldRule(p)
					for _, n := range []int{len(p) + 1, 9} {
						if got := checkInWrites(p, n); got != want {
							t.Fatalf("PayloadChecker(%q) in writes of %d = %q; want %q", p, n, got, want)
						}
					}
				}
			}
		}
	}
}

func FuzzPayloadChecker(f *testing.F) {
	for _, s := range checkSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		want := oldRule(p)
		// Writes of 7 cut every token; one write takes the 8-byte fast
		// paths.
		for _, n := range []int{7, len(p) + 1} {
			if got := checkInWrites(p, n); got != want {
				t.Errorf("PayloadChecker(%q) in writes of %d = %q; want %q", p, n, got, want)
			}
		}
	})
}

func BenchmarkPayloadCheck(b *testing.B) {
	var all [][]byte
	var n int64
	for _, f := range testenv.Fixtures(b) {
		p, _ := os.ReadFile(f.Path)
		all = append(all, p)
		n += int64(len(p))
	}
	b.Run("checker", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			for _, p := range all {
				CheckPayload(p)
			}
		}
	})
	b.Run("json.Valid", func(b *testing.B) {
		b.SetBytes(n)
		for b.Loop() {
			for _, p := range all {
				oldRule(p)
			}
		}
	})
}
