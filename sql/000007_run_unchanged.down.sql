-- The older schema has no unchanged state: such runs left the live commit
-- live, as a succeeded run of it would have.
UPDATE runs SET state = 'succeeded' WHERE state = 'unchanged';
ALTER TABLE runs DROP CONSTRAINT runs_state_check,
    ADD CONSTRAINT runs_state_check
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'superseded', 'refused', 'interrupted'));
