package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// The file's schema is the Config struct itself: the helpers below walk
// its toml tags, so a key added to a struct is known everywhere at once.

// typeAt returns the Go type a key decodes into, following toml tags
// exactly (with case) from Config, or false if the file may not have
// that key.
func typeAt(key []string) (reflect.Type, bool) {
	t := reflect.TypeFor[Config]()
	for _, k := range key {
		t = tableType(t)
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByKey(t, k)
			if !ok {
				return nil, false
			}
			t = f.Type
		case reflect.Map:
			t = t.Elem()
		default:
			return nil, false
		}
	}
	return t, true
}

// tableType unwraps pointers and slices: the keys under an array of tables
// are those of its elements.
func tableType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

// keyOf returns the toml key of a struct field, or "" if it has none.
func keyOf(f reflect.StructField) string {
	k, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if k == "-" || !f.IsExported() {
		return ""
	}
	return k
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); keyOf(f) == key && key != "" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf returns the keys of struct type t, in field order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if k := keyOf(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// describe says what a value of type t is written as in the file.
func describe(t reflect.Type) string {
	if t == durationType {
		return `a duration string such as "10s"`
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Slice:
		e := describe(t.Elem())
		switch {
		case strings.HasPrefix(e, "a string"):
			return "an array of strings"
		case strings.HasPrefix(e, "an array of "):
			return "an array of arrays"
		case e == "a table":
			return "an array of tables"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "a table"
	}
	return t.String()
}

// tables are the places a misplaced key may belong, for hints.
var tables = []struct {
	name string
	typ  reflect.Type
}{
	{"the top level", reflect.TypeFor[Config]()},
	{"[receive]", reflect.TypeFor[Receive]()},
	{"[github]", reflect.TypeFor[GitHub]()},
	{"[status]", reflect.TypeFor[Status]()},
	{"[notify]", reflect.TypeFor[Notify]()},
	{"[notify.targets.NAME]", reflect.TypeFor[NotifyTarget]()},
	{"[queues]", reflect.TypeFor[Queues]()},
	{"[queues.main]", reflect.TypeFor[QueueLimits]()},
	{"[retention]", reflect.TypeFor[Retention]()},
	{"[deployments.NAME]", reflect.TypeFor[Deployment]()},
	{"a sites rule", reflect.TypeFor[SiteRule]()},
}

// suggest returns a hint for the unknown key k: the closest valid key at
// its level, or the table where a key of that name belongs, or "".
func suggest(k toml.Key) string {
	last := k[len(k)-1]
	parent, ok := typeAt(k[:len(k)-1])
	if !ok {
		return ""
	}
	parent = tableType(parent)
	if parent.Kind() == reflect.Struct {
		if best := closest(last, keysOf(parent)); best != "" {
			return fmt.Sprintf("did you mean %q?", best)
		}
	}
	for _, t := range tables {
		if t.typ == parent {
			continue
		}
		if _, ok := fieldByKey(t.typ, last); ok {
			return fmt.Sprintf("%q is a key of %s", last, t.name)
		}
	}
	return ""
}

// closest returns the candidate nearest to s, if it is near enough to be
// a likely misspelling (or s is a prefix of it), else "".
func closest(s string, candidates []string) string {
	s = strings.ToLower(s)
	best, bestDist := "", -1
	for _, c := range candidates {
		d := distance(s, c)
		if d > 1+len(c)/3 && !(len(s) >= 3 && strings.HasPrefix(c, s)) {
			continue
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent
// bytes each count 1.
func distance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
