ALTER TABLE certs DROP COLUMN not_after;
