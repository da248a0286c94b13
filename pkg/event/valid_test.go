package event

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/dh-deployer/dh-deployer/pkg/testenv"
)

// validCases are the edges of the grammar, each judged by json.Valid.
var validCases = []string{
	`{}`, ` {} `, "\t{\n}\r\n", `{"a":1}`, `{"a":-0.5e+10,"b":[true,false,null,{}],"c":""}`,
	`{"a":"\u00e9\"\\\/\b\f\n\r\t"}`, `{"a":[[],[[]],{"b":{}}]}`, `{"a":1E5,"b":0,"c":-0}`,
	`{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`, `{"a":[1,]}`, `{"a":[,1]}`,
	`{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":+1}`, `{"a":-}`, `{"a":tru}`, `{"a":truex}`,
	`{"a":nul}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12g4"}`, "{\"a\":\"\x01\"}", `{"a":"x}`, `{"a":1}}`,
	`{"a":1} {}`, `{"a":1}x`, `{1:2}`, `{"a":[1 2]}`, `{"a":[1}`, `{"a":{]}`, `[1]`, `1`, `"x"`, ``, ` `,
	"{\"a\":\"\xff\"}", `{"a":1,"a":2}`, `{"a" : [ 1 , 2 ] , "b" : { } }`,
	strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000),
	strings.Repeat(`{"a":`, 10001) + `1` + strings.Repeat(`}`, 10001),
	`{"a":` + strings.Repeat(`[`, 9999) + strings.Repeat(`]`, 9999) + `}`,
	`{"a":` + strings.Repeat(`[`, 10000) + strings.Repeat(`]`, 10000) + `}`,
}

func TestValidObjectAgreesWithJSON(t *testing.T) {
	check := func(name string, b []byte) {
		t.Helper()
		want := isObject(b) && json.Valid(b)
		if got := validObject(b); got != want {
			t.Errorf("validObject(%s) = %v; want %v (json.Valid)", name, got, want)
		}
	}
	for _, c := range validCases {
		check(shorten(c), []byte(c))
	}
	for _, f := range testenv.Fixtures(t) {
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		check(f.Path, b)
		for _, n := range []int{1, len(b) / 3, len(b) / 2, len(b) - 2} { // cut short
			if n > 0 && n < len(b) {
				check(f.Path+" cut", b[:n])
			}
		}
	}
}

func FuzzValidObject(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validObject(b), isObject(b) && json.Valid(b); got != want {
			t.Errorf("validObject(%q) = %v; json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValidObject(b *testing.B) {
	var payload []byte
	for _, f := range testenv.Fixtures(b) {
		if body, err := os.ReadFile(f.Path); err == nil && f.Event == "push" && len(body) > 6500 && len(body) < 7500 {
			payload = body
			break
		}
	}
	b.SetBytes(int64(len(payload)))
	b.Run("json.Valid", func(b *testing.B) {
		for b.Loop() {
			json.Valid(payload)
		}
	})
	b.Run("validObject", func(b *testing.B) {
		for b.Loop() {
			validObject(payload)
		}
	})
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
