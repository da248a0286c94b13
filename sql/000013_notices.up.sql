-- The notices dh-route sent on its own (issue 20): one row per key, so
-- that a certificate about to expire is told once a day
-- ("cert/NAME/2026-12-06") and an entry in a failed/ directory once
-- ("failed/QUEUE/ENTRY"), across restarts. dh-route deletes a failed
-- entry's row once the entry has left failed/, and certificates' rows
-- after two days.
CREATE TABLE notices (
    key     text PRIMARY KEY,
    sent_at timestamptz NOT NULL DEFAULT now()
);
