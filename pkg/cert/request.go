package cert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/dh-deployer/dh-deployer/pkg/config"
	"github.com/dh-deployer/dh-deployer/pkg/durable"
	"github.com/dh-deployer/dh-deployer/pkg/progpath"
	"github.com/dh-deployer/dh-deployer/pkg/queue"
	"github.com/dh-deployer/dh-deployer/pkg/store"
	"github.com/dh-deployer/dh-deployer/pkg/sysexec"
	"github.com/dh-deployer/dh-deployer/pkg/sysexits"
)

// The certbot request is how dh-cert (unprivileged, under no_new_privs)
// has certbot run as root on a systemd host: it writes a Request to
// Config.CertbotRequestFile and starts dh-certbot.service (polkit allows it
// exactly that), whose fixed command line, `dh-cert certbot`, runs
// Certbot as root. The request carries only what dh-cert decides: the
// subcommand, the certificate name and its domains. Everything else (the
// certbot program, the authenticator, webroot, account email, ACME server)
// comes from the root-owned configuration, and the argv is built by the
// same CertonlyArgs and RenewArgs as on the sudo path: never a --*-hook,
// never an option from the request.

// RequestVersion is the version of Request this dh-cert writes and reads.
const RequestVersion = 1

// MaxRequestSize bounds the request file `dh-cert certbot` reads: a
// certificate has at most 100 names of at most 253 bytes.
const MaxRequestSize = 64 << 10

// Request is what dh-cert asks `dh-cert certbot` to do.
type Request struct {
	Version int      `json:"version"`
	Command string   `json:"command"` // store.CertCommandCertonly or store.CertCommandRenew
	Name    string   `json:"name,omitempty"`
	Domains []string `json:"domains,omitempty"`
}

// Args validates the request against cfg and returns certbot's arguments:
// CertonlyArgs or RenewArgs. A bad request is a sysexits.DataErr.
func (r *Request) Args(cfg *config.Config) ([]string, error) {
	if r.Version != RequestVersion {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: version %d; want %d", r.Version, RequestVersion)
	}
	switch r.Command {
	case store.CertCommandCertonly:
		if len(r.Domains) > 100 {
			return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: %d domains; at most 100", len(r.Domains))
		}
		return CertonlyArgs(cfg, r.Name, r.Domains)
	case store.CertCommandRenew:
		if r.Name != "" || len(r.Domains) > 0 {
			return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: renew takes no name or domains")
		}
		return RenewArgs(), nil
	}
	return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: unknown command %q", r.Command)
}

// WriteRequest replaces the request file with r (mode 0640: dh-cert's own
// directory, read by root).
func WriteRequest(path string, r Request) error {
	r.Version = RequestVersion
	data, err := json.Marshal(r)
	if err != nil {
		return sysexits.New(sysexits.Software, err)
	}
	if err := durable.WriteFile(path, append(data, '\n'), 0o640); err != nil {
		return queue.Stop(fmt.Errorf("write certbot request: %w", err))
	}
	return nil
}

// ReadRequest reads the request file as root: it lives in a directory the
// unprivileged dh-cert owns, so it is opened without following a symbolic
// link and without blocking (a FIFO), must be a regular file of at most
// MaxRequestSize bytes, and is decoded strictly (unknown fields, trailing
// data and a wrong version are refused). Every problem is a
// sysexits.DataErr, and no message repeats the file's content.
func ReadRequest(path string) (*Request, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: open %s: %v", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, queue.Stop(fmt.Errorf("certbot request: %v", err))
	}
	if !fi.Mode().IsRegular() {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: %s is not a regular file", path)
	}
	if fi.Size() > MaxRequestSize {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: %s has %d bytes; at most %d", path, fi.Size(), MaxRequestSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxRequestSize+1))
	if err != nil {
		return nil, queue.Stop(fmt.Errorf("certbot request: read %s: %v", path, err))
	}
	if len(data) > MaxRequestSize {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: %s is larger than %d bytes", path, MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: %s is not a request", path)
	}
	if dec.More() {
		return nil, sysexits.Errorf(sysexits.DataErr, "certbot request: %s has data after the request", path)
	}
	return &r, nil
}

// CertbotEnv names the variables of its own environment `dh-cert certbot`
// passes to certbot (set by the root unit, e.g. a drop-in's Environment=
// for a private ACME server's CA), besides PATH=progpath.SystemPATH.
var CertbotEnv = []string{"REQUESTS_CA_BUNDLE"}

// Certbot is `dh-cert certbot`, run as root by dh-certbot.service: it
// reads the request file, checks it (Request.Args) and runs cfg.Cert.Certbot
// with the arguments, its output to out (the unit's output file, which
// dh-cert reads for its records). It fails, without running certbot, on a
// bad request; a failed certbot is a sysexits.Failure.
func Certbot(ctx context.Context, cfg *config.Config, getenv func(string) string, out io.Writer) error {
	req, err := ReadRequest(cfg.CertbotRequestFile())
	if err != nil {
		return err
	}
	args, err := req.Args(cfg)
	if err != nil {
		return err
	}
	env := []string{"PATH=" + progpath.SystemPATH}
	for _, name := range CertbotEnv {
		if v := getenv(name); v != "" {
			env = append(env, name+"="+v)
		}
	}
	fmt.Fprintf(out, "dh-cert certbot: %s %q\n", cfg.Cert.Certbot, args)
	_, err = sysexec.Run(ctx, sysexec.Cmd{Path: cfg.Cert.Certbot, Args: slices.Clone(args), Env: env, Dir: "/",
		Timeout: DefaultTimeout, Stream: out})
	if ee, ok := errors.AsType[*sysexec.ExitError](err); ok {
		return sysexits.New(sysexits.Failure, fmt.Errorf("certbot %s: %s", req.Command, describeFailure(ee)))
	}
	return err
}
