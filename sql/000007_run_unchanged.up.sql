-- A run of the commit that is already live, which ran no step (a
-- redelivery, or a push of the same commit under a new delivery).
ALTER TABLE runs DROP CONSTRAINT runs_state_check,
    ADD CONSTRAINT runs_state_check
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'superseded', 'refused', 'interrupted',
                         'unchanged'));
