ALTER TABLE runs DROP COLUMN commit_subject, DROP COLUMN commit_author;
