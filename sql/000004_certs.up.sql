-- dh-cert's certificates: one row per certificate name, the state of the
-- request being worked on and its backoff; and one row per certbot run.

CREATE TABLE certs (
    name          text PRIMARY KEY,               -- certbot's --cert-name
    domains       text[] NOT NULL,                -- the names it covers (last asked for)
    state         text NOT NULL                   -- issued, waiting (failed; retried at next_try) or failed (gave up)
                  CHECK (state IN ('issued', 'waiting', 'failed')),
    entry         text,                           -- the queues/cert entry last handled for it
    attempts      int NOT NULL DEFAULT 0,         -- consecutive failed attempts of that entry
    last_error    text,                           -- certbot's message of the last failure
    next_try      timestamptz,                    -- no certbot run for it before this time
    updated_at    timestamptz NOT NULL DEFAULT now(),
    issued_at     timestamptz                     -- when certbot last succeeded for it
);

CREATE TABLE cert_attempts (
    id            bigserial PRIMARY KEY,
    name          text,                           -- the certificate; NULL for a renew run (all of them)
    domains       text[] NOT NULL DEFAULT '{}',
    command       text NOT NULL CHECK (command IN ('certonly', 'renew')),
    entry         text,                           -- the queues/cert entry, if any
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now(),
    ok            boolean NOT NULL,
    exit_code     int,                            -- certbot's exit status; NULL if it did not run or died by a signal
    error         text                            -- why it failed
);
CREATE INDEX cert_attempts_name ON cert_attempts (name, id);
