-- Who or what started a run, as space-separated key=value pairs:
-- pusher= and sender= from a push payload, token= the name of the token
-- file of a POST /deploy/NAME (never the token), user= the Unix user
-- behind a command by hand (SUDO_USER, else the uid's name).
ALTER TABLE runs ADD COLUMN triggered_by text;
