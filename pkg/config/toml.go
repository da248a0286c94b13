package config

import (
	"encoding/json"
	"strings"
)

// TOMLArray renders strings as a TOML array of basic strings, for the
// programs and tests that write configuration files (argv lists).
func TOMLArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		var b strings.Builder
		enc := json.NewEncoder(&b) // a JSON string is a TOML basic string
		enc.SetEscapeHTML(false)
		enc.Encode(s)
		q[i] = strings.TrimSpace(b.String())
	}
	return "[" + strings.Join(q, ", ") + "]"
}
