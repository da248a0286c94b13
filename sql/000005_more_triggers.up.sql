-- Runs started by POST /deploy/NAME with a token, and by a git
-- post-receive hook on this host (dh-receive hook).
ALTER TABLE runs DROP CONSTRAINT runs_trigger_check,
    ADD CONSTRAINT runs_trigger_check
        CHECK (trigger IN ('webhook', 'manual', 'rollback', 'replay', 'token', 'hook'));
