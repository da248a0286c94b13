// Package migrations holds the database schema as golang-migrate
// migrations (NNNNNN_name.up.sql / .down.sql), embedded in every binary.
// pkg/store applies them; only `dh-route migrate` changes the schema.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS
