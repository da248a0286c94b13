-- The older schema knows neither trigger: record such runs as manual and
-- webhook.
UPDATE runs SET trigger = 'manual' WHERE trigger = 'token';
UPDATE runs SET trigger = 'webhook' WHERE trigger = 'hook';
ALTER TABLE runs DROP CONSTRAINT runs_trigger_check,
    ADD CONSTRAINT runs_trigger_check
        CHECK (trigger IN ('webhook', 'manual', 'rollback', 'replay'));
