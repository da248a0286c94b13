package cert

import (
	"context"
	"time"

	"github.com/dh-deployer/dh-deployer/pkg/config"
)

// expiry returns the NotAfter of the certificate name as certbot left it
// in cert_dir (NAME/fullchain.pem, whose leaf is the certificate: dh-cert
// may read it, never the private key); zero, with a warning, if it cannot
// be read. dh-cert records it (certs.not_after) after certbot obtained
// the certificate and at every renew, so that dh-route, which may not
// look into cert_dir, reports the exact expiry.
func (w *Worker) expiry(name string) time.Time {
	t, err := config.CertExpiry(w.cfg.Nginx.CertDir, name)
	if err != nil {
		w.log.Warn("could not read the certificate's expiry", "cert", name, "err", err)
		return time.Time{}
	}
	return t
}

// recordExpiries records the expiry of each certificate of names that
// dh-cert records (certs), read from the certificates as they are now.
// It is Renew's: a failure is logged, never the renewal's.
func (w *Worker) recordExpiries(ctx context.Context, names []string) {
	for _, name := range names {
		t := w.expiry(name)
		if t.IsZero() {
			continue
		}
		if _, err := w.st.SetCertExpiry(ctx, name, t); err != nil {
			w.log.Warn("could not record the certificate's expiry", "cert", name, "err", err)
			return
		}
	}
}
