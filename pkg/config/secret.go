package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/hint"
)

// MinSecretLen is the shortest secret ReadSecretFile accepts, in bytes.
const MinSecretLen = 16

// maxSecretSize bounds what ReadSecretFile reads: a secret is small, and a
// file name pointing at something huge is a mistake.
const maxSecretSize = 64 << 10

const generateHint = "generate one with: head -c 32 /dev/urandom | base64"

// placeholders are the texts that show a secret was never filled in:
// a secret containing one (ignoring case) is refused.
var placeholders = []string{
	"changeme", "change-me", "change_me", "replace-me", "replace_me", "replaceme",
	"placeholder", "your-secret", "your_secret", "yoursecret", "example", "secret123",
}

// placeholderWords are refused when they are the whole secret.
var placeholderWords = []string{"secret", "password", "test", "xxxxxxxxxxxxxxxx"}

// CredentialPath resolves the name of a secret file (receive.secret_files,
// token_files, github.token_file, status.token_file, and each notify
// target's url_file and password_file) by one rule, the way the units hand secrets over:
//
//   - an absolute path is used as it is;
//   - a relative name is a file in $CREDENTIALS_DIRECTORY when that is set
//     (systemd's LoadCredential=NAME:SOURCE put it there);
//   - otherwise it is the file of that name beside the configuration file,
//     which is where the units' LoadCredential= sources are
//     (/etc/dh-deployer/NAME): the same secret, for a tool run by hand
//     from a shell.
//
// A name that leaves its directory is refused, and so, with a hint, is a
// relative name that resolves to no file outside systemd.
func (c *Config) CredentialPath(name string, getenv func(string) string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	if !filepath.IsLocal(name) {
		return "", errorf("config: secret file %q: must be absolute, or a name inside $%s or the configuration's directory", name, EnvCredentials)
	}
	if getenv != nil {
		if dir := getenv(EnvCredentials); dir != "" {
			return filepath.Join(dir, name), nil
		}
	}
	if c.File == "" {
		return "", hint.With(
			errorf("config: secret file %q: relative, and neither $%s nor a configuration file to look beside", name, EnvCredentials),
			"give an absolute path, or pass the file with systemd's LoadCredential=")
	}
	path := filepath.Join(filepath.Dir(c.File), name)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return "", hint.With(
			errorf("config: secret file %q: $%s is not set (not run by systemd with LoadCredential=%s:...), and there is no %s", name, EnvCredentials, name, path),
			fmt.Sprintf("put the secret in %s (the source of the units' LoadCredential=), or give its absolute path in %s", path, c.File))
	}
	return path, nil
}

// ReadSecretFile reads a secret from the file at path and checks it. One
// trailing newline ("\n" or "\r\n") is removed. It refuses, with an error
// a config.Error (exit 78) that names the file but never shows its
// contents: a missing, unreadable or non-regular file, a file larger than
// 64 KiB, an empty secret, a secret that looks like a placeholder
// ("changeme", "example", "secret", one byte repeated, …), and a secret
// shorter than MinSecretLen.
func ReadSecretFile(path string) ([]byte, error) {
	data, err := readLimited(path, maxSecretSize)
	if err != nil {
		return nil, errorf("config: read secret file: %w", err)
	}
	secret := data
	if s, ok := bytes.CutSuffix(secret, []byte("\r\n")); ok {
		secret = s
	} else if s, ok := bytes.CutSuffix(secret, []byte("\n")); ok {
		secret = s
	}
	refuse := func(why string) error {
		return hint.With(errorf("config: secret file %s: %s", path, why), generateHint)
	}
	switch {
	case len(secret) == 0:
		return nil, refuse("empty")
	case isPlaceholder(secret):
		return nil, refuse("holds a placeholder, not a secret")
	case bytes.Count(secret, secret[:1]) == len(secret):
		return nil, refuse("holds one byte repeated, not a secret")
	case len(secret) < MinSecretLen:
		return nil, refuse(fmt.Sprintf("secret shorter than %d bytes", MinSecretLen))
	}
	return secret, nil
}

func isPlaceholder(secret []byte) bool {
	s := strings.ToLower(string(secret))
	for _, p := range placeholders {
		if strings.Contains(s, p) {
			return true
		}
	}
	for _, w := range placeholderWords {
		if s == w {
			return true
		}
	}
	return false
}

// readLimited reads a regular file of at most max bytes.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return data, nil
}

// WebhookSecrets reads every file of receive.secret_files with
// ReadSecretFile, resolving names with CredentialPath; getenv gives
// $CREDENTIALS_DIRECTORY. Any secret may sign a delivery. It fails
// if none is configured or any file is refused; every error is classified
// a config.Error (exit 78).
func (c *Config) WebhookSecrets(getenv func(string) string) ([][]byte, error) {
	if len(c.Receive.SecretFiles) == 0 {
		return nil, hint.With(
			errorf("config: receive.secret_files: no webhook secret configured"),
			`set secret_files = ["/etc/dh-deployer/webhook-secret"] in [receive]; `+generateHint)
	}
	var secrets [][]byte
	var errs []error
	for _, name := range c.Receive.SecretFiles {
		path, err := c.CredentialPath(name, getenv)
		if err == nil {
			var s []byte
			if s, err = ReadSecretFile(path); err == nil {
				secrets = append(secrets, s)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return secrets, nil
}

// DeployToken is one token of a deployment's token_files.
type DeployToken struct {
	Name  string // the base name of its file, for the record
	Token []byte
}

// DeployTokens reads every deployment's token_files like WebhookSecrets
// reads the secrets, and returns the tokens by deployment name; a
// deployment without token files has no entry.
func (c *Config) DeployTokens(getenv func(string) string) (map[string][]DeployToken, error) {
	tokens := map[string][]DeployToken{}
	var errs []error
	for _, name := range c.DeploymentNames() {
		for _, f := range c.Deployments[name].TokenFiles {
			path, err := c.CredentialPath(f, getenv)
			if err == nil {
				var tok []byte
				if tok, err = ReadSecretFile(path); err == nil {
					tokens[name] = append(tokens[name], DeployToken{Name: filepath.Base(f), Token: tok})
				}
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return tokens, nil
}

// GitHubToken reads github.token_file like WebhookSecrets reads a secret.
// It returns nil and no error if no token file is configured.
func (c *Config) GitHubToken(getenv func(string) string) ([]byte, error) {
	return c.optionalSecret(c.GitHub.TokenFile, getenv)
}

// MetricsToken reads receive.metrics_token_file like StatusToken reads
// status.token_file: nil and no error if none is configured.
func (c *Config) MetricsToken(getenv func(string) string) ([]byte, error) {
	return c.optionalSecret(c.Receive.MetricsTokenFile, getenv)
}

// ReceiveStatusToken reads receive.status_token_file like StatusToken
// reads status.token_file; nil and no error without one.
func (c *Config) ReceiveStatusToken(getenv func(string) string) ([]byte, error) {
	return c.optionalSecret(c.Receive.StatusTokenFile, getenv)
}

func (c *Config) optionalSecret(file string, getenv func(string) string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	path, err := c.CredentialPath(file, getenv)
	if err != nil {
		return nil, err
	}
	return ReadSecretFile(path)
}
