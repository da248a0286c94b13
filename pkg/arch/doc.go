// Package arch holds no code: its test, deps_test.go, is the architecture
// of dh-deployer written as rules on the import graph, checked with
// `go list` on every `make test`:
//
//   - no stage package (pkg/receive, pkg/route, pkg/deploy, pkg/nginx,
//     pkg/cert) imports another stage, directly or through other packages;
//   - each tool's binary (cmd/dh-*) links its own stage and no other;
//   - dh-receive, facing the network, links neither the store nor the git
//     or command-running code (pkg/store, pkg/gitrepo, pkg/sysexec);
//   - pkg/queue and pkg/durable know nothing of exit statuses
//     (pkg/sysexits), apart from the exceptions listed in the test, which
//     must shrink (issue 18): an exception no longer needed fails too.
package arch
