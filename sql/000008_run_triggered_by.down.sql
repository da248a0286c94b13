ALTER TABLE runs DROP COLUMN triggered_by;
