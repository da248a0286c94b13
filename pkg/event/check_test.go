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

func FuzzPayloadChecker(f *testing.F) {
	for _, s := range checkSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if got, want := checkInWrites(p, 7), oldRule(p); got != want {
			t.Errorf("PayloadChecker(%q) = %q; want %q", p, got, want)
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
