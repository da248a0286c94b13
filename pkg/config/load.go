package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/hint"
	"github.com/dh-deployer/dh-deployer/pkg/systemd"
)

// Load reads, decodes and validates the configuration file at path, then
// applies DH_DATABASE_URL from the environment. See the package
// documentation for what its errors say; all are classified
// a config.Error (exit 78).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, hint.With(
				errorf("config: %s: no such file", path),
				"name the configuration file with -c FILE or DH_CONFIG=FILE")
		}
		return nil, errorf("config: %w", err)
	}
	c, err := parse(path, data, os.Getenv, booted())
	if err != nil {
		return nil, err
	}
	if err := c.checkQueueFS(); err != nil {
		return nil, err
	}
	if err := c.checkWriters(); err != nil {
		return nil, err
	}
	return c, nil
}

// checkQueueFS refuses a queue_dir on a file system that keeps nothing
// across a reboot (tmpfs, ramfs) unless queue_dir_throwaway says it is a
// throwaway. Other errors (the directory unreadable, say) are left to the
// stages, which report them where they use it.
func (c *Config) checkQueueFS() error {
	if c.QueueDirThrowaway {
		return nil
	}
	if err := durable.CheckFS(c.QueueDir); errors.Is(err, durable.ErrVolatile) {
		return hint.With(
			errorf("config: %s: queue_dir %v: an acknowledged delivery would be lost at a reboot", c.File, err),
			"put queue_dir on a disk, or set queue_dir_throwaway = true if losing the queues is fine (demos, tests)")
	}
	return nil
}

// booted reports whether the host runs systemd, which decides the
// defaults of root work (see Config.setDefaults). A variable for tests.
var booted = systemd.Booted

// Parse decodes and validates a configuration held in memory, like Load
// but without reading the environment, and with the defaults of a host
// without systemd (sudo for root work); name is used in messages and kept
// in Config.File.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, nil, false)
}

// maxLocated bounds how many errors get a line number: each costs one more
// decode of the file.
const maxLocated = 20

func parse(name string, data []byte, getenv func(string) string, booted bool) (*Config, error) {
	c := Default()
	c.File = name
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return nil, decodeError(name, err)
	}
	f := &file{name: name, data: data, md: &md}
	if errs := f.unknownKeys(); len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	if errs := f.durationTypes(); len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	if getenv != nil {
		if u := getenv(EnvDatabaseURL); u != "" {
			c.DatabaseURL = u
		}
	}
	c.setDefaults(md.IsDefined, booted)
	if problems := c.validate(); len(problems) > 0 {
		errs := make([]error, len(problems))
		for i, p := range problems {
			line := 0
			if i < maxLocated {
				line = f.lineOf(p.key)
			}
			errs[i] = p.err(name, line)
		}
		return nil, joinErrors(errs)
	}
	return c, nil
}

// joinErrors returns the only error, or all of them joined and classified.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return &Error{Err: errors.Join(errs...)}
}

// where formats "name:line" or "name" for messages.
func where(name string, line int) string {
	if line > 0 {
		return name + ":" + strconv.Itoa(line)
	}
	return name
}

// typeErrorRE matches the decoder's type errors, which are plain errors
// ("toml: line 5 (last key "a.b"): incompatible types: …").
var typeErrorRE = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "(.*)"\): `)

// decodeError turns an error of toml.Decode into a Config error showing
// where in the file it is.
func decodeError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.LastKey != "" {
			msg += fmt.Sprintf(" (last key %q)", pe.LastKey)
		}
		err := errorf("config: %s:%d:%d: %s",
			name, pe.Position.Line, pe.Position.Col, msg)
		if strings.HasPrefix(pe.Message, "invalid duration") {
			err = hint.With(err, `write a duration such as "30s", "10m" or "1h30m"`)
		}
		return err
	}
	if m := typeErrorRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		key := m[2]
		if t, ok := typeAt(splitKey(key)); ok {
			err := errorf("config: %s: %s: wrong type: want %s",
				where(name, line), key, describe(t))
			if key == "receive.trusted_proxies" {
				// The old form was a count of proxies, which let a client
				// that reached dh-receive directly choose its address.
				err = hint.With(err, `trusted_proxies is now the list of your proxies' addresses, not their number: `+
					`for nginx on this host write trusted_proxies = ["127.0.0.1", "::1"], or ["unix"] behind dh-receive.socket`)
			}
			return err
		}
		return errorf("config: %s: %s: %s",
			where(name, line), key, strings.TrimPrefix(err.Error(), m[0]))
	}
	return errorf("config: %s: %s", name, strings.TrimPrefix(err.Error(), "toml: "))
}

// splitKey splits a key as printed by toml.Key.String. Quoted parts are
// not unquoted: it is only used to find the Go type, and quoted parts do
// not name struct fields.
func splitKey(s string) []string { return strings.Split(s, ".") }

// file is a decoded configuration file, for error messages.
type file struct {
	name string
	data []byte
	md   *toml.MetaData
}

// unknownKeys returns an error for each key that decoded into nothing
// (md.Undecoded) or matched a field only without regard to case, which the
// decoder allows and this package does not. Only the outermost such key of
// a table is reported, not every key inside it.
func (f *file) unknownKeys() []error {
	undecoded := map[string]bool{}
	for _, k := range f.md.Undecoded() {
		undecoded[k.String()] = true
	}
	var errs []error
	var reported []toml.Key
outer:
	for _, k := range f.md.Keys() {
		for _, r := range reported {
			if len(k) > len(r) && slices.Equal(k[:len(r)], r) {
				continue outer
			}
		}
		if !undecoded[k.String()] {
			if _, ok := typeAt(k); ok {
				continue
			}
		}
		reported = append(reported, k)
		line := 0
		if len(errs) < maxLocated {
			line = f.lineOf(k)
		}
		err := errorf("config: %s: unknown key %q", where(f.name, line), k.String())
		if h := movedKeys[k.String()]; h != "" {
			err = hint.With(err, h)
		} else if h := suggest(k); h != "" {
			err = hint.With(err, h)
		}
		errs = append(errs, err)
	}
	return errs
}

// movedKeys are keys that older versions took, with how to write them now.
var movedKeys = map[string]string{
	"notify.url_file": `the webhook is now a target that dh-route posts to: write [notify] default_targets = ["chat"] and ` +
		`[notify.targets.chat] kind = "slack", url_file = "…", on = ["success", "failure"] (docs/route.md, "Notifications")`,
	"notify.username": `username now belongs to a target: [notify.targets.NAME] username = "…"`,
}

var durationType = reflect.TypeFor[time.Duration]()

// durationTypes rejects durations written as numbers, which the decoder
// would take as nanoseconds.
func (f *file) durationTypes() []error {
	var errs []error
	for _, k := range f.md.Keys() {
		t, ok := typeAt(k)
		if !ok || t != durationType || f.md.Type(k...) == "String" {
			continue
		}
		errs = append(errs, hint.With(
			errorf("config: %s: %s: a duration must be a string",
				where(f.name, f.lineOf(k)), k.String()),
			`write a duration such as "30s", "10m" or "1h30m"`))
	}
	return errs
}

// lineOf returns the line of key in the file, or of its nearest enclosing
// table that has one, or 0.
func (f *file) lineOf(key []string) int {
	for k := toml.Key(key); len(k) > 0; k = k[:len(k)-1] {
		if line := locate(f.data, f.md, k); line > 0 {
			return line
		}
	}
	return 0
}

// errLocate marks the key being located; see locate.
var errLocate = errors.New("located")

// locator fails to decode; see locate.
type locator struct{}

func (*locator) UnmarshalTOML(any) error { return errLocate }

// locate returns the line where key is defined, or 0.
//
// toml v1.6 records each key's position but exposes it only in the
// ParseError it returns when a toml.Unmarshaler fails, positioned at the
// key being decoded. So build, with reflection, a struct type holding just
// the path of key (a slice where the file has an array of tables), with a
// failing locator at its end, and decode the file into it once more.
func locate(data []byte, md *toml.MetaData, key toml.Key) (line int) {
	defer func() {
		if recover() != nil {
			line = 0
		}
	}()
	t := reflect.TypeFor[locator]()
	for i := len(key) - 1; i >= 0; i-- {
		if i < len(key)-1 {
			switch md.Type(key[:i+1]...) {
			case "Array", "ArrayHash":
				t = reflect.SliceOf(t)
			}
		}
		fields := []reflect.StructField{field("F", key[i], t)}
		// The decoder matches a key to a field without regard to case
		// when no field has its exact name: give the other spellings
		// of this key fields of their own, or they would reach F.
		for _, s := range siblings(md, key[:i+1]) {
			fields = append(fields, field(fmt.Sprintf("S%d", len(fields)), s, reflect.TypeFor[any]()))
		}
		for _, f := range fields {
			if strings.Contains(f.Tag.Get("toml"), ",") { // a tag cannot name it
				return 0
			}
		}
		t = reflect.StructOf(fields)
	}
	_, err := toml.NewDecoder(bytes.NewReader(data)).Decode(reflect.New(t).Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Message == errLocate.Error() && pe.LastKey == key.String() {
		return pe.Position.Line
	}
	return 0
}

func field(name, key string, t reflect.Type) reflect.StructField {
	return reflect.StructField{Name: name, Type: t, Tag: reflect.StructTag(`toml:` + strconv.Quote(key))}
}

// siblings returns the keys beside key in the file that differ from it
// only in case.
func siblings(md *toml.MetaData, key toml.Key) []string {
	var out []string
	last := key[len(key)-1]
	for _, k := range md.Keys() {
		if len(k) == len(key) && slices.Equal(k[:len(k)-1], key[:len(key)-1]) &&
			k[len(k)-1] != last && strings.EqualFold(k[len(k)-1], last) && !slices.Contains(out, k[len(k)-1]) {
			out = append(out, k[len(k)-1])
		}
	}
	return out
}

// ErrNoDeployment is wrapped by Lookup's error for a name the
// configuration lacks.
var ErrNoDeployment = errors.New("no deployment")

// Lookup returns the deployment name, or the one error every command
// gives for a name the configuration lacks: a usage error (exit 64)
// naming it and the file, with the deployments there are as a hint. It
// needs the configuration only, so commands check the name before they
// open the database.
func (c *Config) Lookup(name string) (*Deployment, error) {
	if d, ok := c.Deployment(name); ok {
		return d, nil
	}
	h := "the deployments are: " + strings.Join(c.DeploymentNames(), ", ")
	if len(c.Deployments) == 0 {
		h = "there are none yet: dh-deploy add NAME adds one"
	}
	return nil, hint.With(fmt.Errorf("%w %q in %s", ErrNoDeployment, name, c.File), h)
}
