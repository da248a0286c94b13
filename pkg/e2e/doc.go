// Package e2e holds the tests of the whole suite, and nothing else: the
// five real binaries (built with testenv.Build) as separate processes, each
// as its own Unix user (runuser -u USER -g dh-deployer), with the shipped
// sysusers.d and tmpfiles.d files applied by acl/dh-deployer-acl to a
// private DH_ROOT, sql/roles.sql applied to a throwaway PostgreSQL
// (pkg/pgtemp) to which every stage connects as its own role, local bare
// git repositories standing in for GitHub, and, for the nginx path, a
// private nginx (pkg/nginx/nginxtest) reached through sudo and pebble with
// certbot (pkg/cert/certtest), also through sudo.
//
// The tests run as root (they create users, mount a tmpfs and install
// sudoers drop-ins); a machine-wide lock (testenv.LockUsers) keeps them
// and the acl tests from creating and deleting the same users at once.
// Everything they make (processes, users they created, directories,
// mounts, /etc/sudoers.d drop-ins) is removed when a test ends, whether it
// passed or not.
//
//   - TestWholeSuite: a signed push of an app (steps) and of an nginx-kind
//     deployment go all the way, to the deployed commit and its history,
//     and to the site installed with its certificate and served over HTTPS.
//   - TestChaos: while deliveries are posted, stages are SIGKILLed and
//     restarted; afterwards nothing accepted is lost or deployed twice.
//     DH_E2E_FULL=1 (make chaos) runs the full numbers.
//   - TestPostgresOutage: the database stops in the middle of a stream of
//     deliveries; everything catches up after it starts again.
//   - TestDeliveryFeedback: a token deploy with ?wait answers 200 or 422
//     with its result and log tail, its Location is the delivery's page,
//     and `dh-deploy logs --follow` and `dh-receive hook --wait` (as a
//     pushing user) print a step's line while the step still runs.
//   - TestDiskFull: a full queue file system gets 503, never a 202 without
//     an entry, and 202 again once space returns.
package e2e
