-- dh-route's forwards: one row per (delivery, deployment) it queued, which
-- makes routing idempotent across crashes and redeliveries (docs/route.md).
CREATE TABLE routes (
    delivery    text NOT NULL REFERENCES events (delivery),
    deployment  text NOT NULL,                   -- the deployment queue it was published to
    entry       text NOT NULL,                   -- the queues/main entry whose handling forwarded it last
    routed_at   timestamptz NOT NULL DEFAULT now(), -- when it was last forwarded (runs queued since belong to it)
    forwards    int NOT NULL DEFAULT 1,          -- how many times it was forwarded (redeliveries of failed runs)
    PRIMARY KEY (delivery, deployment)
);

-- dh-route status: the last decisions.
CREATE INDEX events_decided_at ON events (decided_at DESC NULLS LAST);
