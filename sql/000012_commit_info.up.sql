-- What a run deployed, for people: the commit's subject line and author,
-- read from the repository by dh-deploy when the run starts (issue 20).
-- NULL for runs recorded before, and for runs whose commit could not be
-- read (a failed fetch).
ALTER TABLE runs ADD COLUMN commit_subject text, ADD COLUMN commit_author text;
