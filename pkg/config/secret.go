package config

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
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

// CredentialPath resolves the name of a secret file: an absolute path is
// returned as it is; a relative one names a file in $CREDENTIALS_DIRECTORY
// (systemd LoadCredential=), which must be set, and must not leave it.
func CredentialPath(name string, getenv func(string) string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	if !filepath.IsLocal(name) {
		return "", sysexits.Errorf(sysexits.Config, "config: secret file %q: must be absolute, or a name inside $%s", name, EnvCredentials)
	}
	dir := ""
	if getenv != nil {
		dir = getenv(EnvCredentials)
	}
	if dir == "" {
		return "", sysexits.WithHint(
			sysexits.Errorf(sysexits.Config, "config: secret file %q: relative, and $%s is not set", name, EnvCredentials),
			"give an absolute path, or pass the file with systemd's LoadCredential=")
	}
	return filepath.Join(dir, name), nil
}

// ReadSecretFile reads a secret from the file at path and checks it. One
// trailing newline ("\n" or "\r\n") is removed. It refuses, with an error
// classified sysexits.Config that names the file but never shows its
// contents: a missing, unreadable or non-regular file, a file larger than
// 64 KiB, an empty secret, a secret that looks like a placeholder
// ("changeme", "example", "secret", one byte repeated, …), and a secret
// shorter than MinSecretLen.
func ReadSecretFile(path string) ([]byte, error) {
	data, err := readLimited(path, maxSecretSize)
	if err != nil {
		return nil, sysexits.Errorf(sysexits.Config, "config: read secret file: %w", err)
	}
	secret := data
	if s, ok := bytes.CutSuffix(secret, []byte("\r\n")); ok {
		secret = s
	} else if s, ok := bytes.CutSuffix(secret, []byte("\n")); ok {
		secret = s
	}
	refuse := func(why string) error {
		return sysexits.WithHint(sysexits.Errorf(sysexits.Config, "config: secret file %s: %s", path, why), generateHint)
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
// ReadSecretFile, resolving relative names with CredentialPath; getenv
// gives $CREDENTIALS_DIRECTORY. Any secret may sign a delivery. It fails
// if none is configured or any file is refused; every error is classified
// sysexits.Config.
func (c *Config) WebhookSecrets(getenv func(string) string) ([][]byte, error) {
	if len(c.Receive.SecretFiles) == 0 {
		return nil, sysexits.WithHint(
			sysexits.Errorf(sysexits.Config, "config: receive.secret_files: no webhook secret configured"),
			`set secret_files = ["/etc/dh-deployer/webhook-secret"] in [receive]; `+generateHint)
	}
	var secrets [][]byte
	var errs []error
	for _, name := range c.Receive.SecretFiles {
		path, err := CredentialPath(name, getenv)
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

// DeployTokens reads every deployment's token_files like WebhookSecrets
// reads the secrets, and returns the tokens by deployment name; a
// deployment without token files has no entry.
func (c *Config) DeployTokens(getenv func(string) string) (map[string][][]byte, error) {
	tokens := map[string][][]byte{}
	var errs []error
	for _, name := range c.DeploymentNames() {
		for _, f := range c.Deployments[name].TokenFiles {
			path, err := CredentialPath(f, getenv)
			if err == nil {
				var tok []byte
				if tok, err = ReadSecretFile(path); err == nil {
					tokens[name] = append(tokens[name], tok)
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
	return optionalSecret(c.GitHub.TokenFile, getenv)
}

// NotifyURL reads notify.url_file like WebhookSecrets reads a secret and
// checks it is an http or https URL. It returns "" and no error if no file
// is configured.
func (c *Config) NotifyURL(getenv func(string) string) (string, error) {
	b, err := optionalSecret(c.Notify.URLFile, getenv)
	if err != nil || b == nil {
		return "", err
	}
	u, err := url.Parse(string(b))
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		// The URL is a secret: name the file, not its content.
		return "", sysexits.Errorf(sysexits.Config, "%s: not an http or https URL", c.Notify.URLFile)
	}
	return string(b), nil
}

func optionalSecret(file string, getenv func(string) string) ([]byte, error) {
	if file == "" {
		return nil, nil
	}
	path, err := CredentialPath(file, getenv)
	if err != nil {
		return nil, err
	}
	return ReadSecretFile(path)
}
