DROP INDEX IF EXISTS events_decided_at;
DROP TABLE IF EXISTS routes;
