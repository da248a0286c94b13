-- The exact expiry of each certificate (its NotAfter), which dh-cert reads
-- from the certificate (cert_dir/NAME/fullchain.pem, readable by dh-cert
-- alone) after certbot obtained or renewed it and at every renew; dh-route
-- reports it in /metrics and the expiry notices, which no longer estimate
-- it from issued_at. NULL until dh-cert has read it.
ALTER TABLE certs ADD COLUMN not_after timestamptz;
