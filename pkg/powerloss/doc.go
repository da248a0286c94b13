// Package powerloss holds the power-loss tests of the real stages: each
// runs a stage's binary with queue_dir on a crash file system
// (pkg/crashfs), cuts the power at a random moment while it works, kills
// it with SIGKILL, remounts what was durable and checks the queues:
//
//   - dh-receive under concurrent signed load: every delivery answered 202
//     is in queues/main, byte for byte, and no entry is partial.
//   - dh-route cut mid-batch: every delivery is in queues/main or in each of
//     its deployment queues, never in neither; after recovery, in each
//     deployment queue exactly once.
//   - dh-deploy working an nginx-kind deployment's queue: every delivery
//     is still queued or has a succeeded run whose hand-off is in
//     queues/nginx; after recovery each has exactly one succeeded run.
//   - dh-nginx with a private nginx (pkg/nginx/nginxtest), consuming
//     nginx-reload entries (none consumed in a round without a reload),
//     nginx-sites entries whose HTTPS site waits for a certificate (none
//     consumed without its cert-request in queues/cert) and nginx-sites
//     entries of an unknown deployment (each queued or in failed/ with its
//     sidecar); every entry whole, nothing else failed.
//   - dh-cert running a real certbot against pebble (pkg/cert/certtest):
//     every request still in queues/cert or its site install (nginx-sites)
//     in queues/nginx; a request with a bad name still queued or in
//     failed/ with its sidecar; after recovery every request handed off
//     or failed.
//
// A cut stops the stage and every process it started (certbot, nginx -t)
// at once, as a power loss does.
//
// Each test logs one line "powerloss: STAGE: rounds=R acknowledged=A
// lost=L corrupt=C" (dh-route and dh-deploy add duplicates=D; dh-route's
// acknowledged counts the deliveries put into queues/main, its lost
// (delivery, deployment queue) pairs in neither place). make test runs a few
// rounds; make crash many: DH_CRASH_ROUNDS (rounds per stage) and
// DH_CRASH_TIME (a Go duration per stage) bound them.
//
// The crash file system keeps only what fsync, fdatasync and directory
// fsyncs made durable, like a disk after a power cut, and like any FUSE
// file system it never sees syncfs(2). The tests need root, /dev/fuse and
// fusermount3 (Debian's fuse3); all but dh-receive's also a throwaway
// PostgreSQL (pkg/store/storetest), which is not on the crash file system
// and keeps everything across a cut; dh-cert's also pebble and certbot.
package powerloss
