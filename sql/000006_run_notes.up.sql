-- A note on a run that is not an error: why it waited (paused, outside its
-- deploy windows), or that a manual deploy was forced past a pause.
ALTER TABLE runs ADD COLUMN note text;
