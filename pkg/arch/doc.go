// Package arch holds no code: its test, deps_test.go, is the architecture
// of dh-deployer written as rules on the import graph, checked with
// `go list` on every `make test`:
//
//   - no stage package (pkg/receive, pkg/route, pkg/deploy, pkg/nginx,
//     pkg/cert) imports another stage, directly or through other packages;
//   - each tool's binary (cmd/dh-*) links its own stage and no other;
//   - dh-receive, facing the network, links neither the store nor the git
//     or command-running code (pkg/store, pkg/gitrepo, pkg/sysexec);
//   - pkg/queue, pkg/durable and pkg/hint know nothing of exit statuses
//     (they link no pkg/sysexits): a handler's error is a queue outcome,
//     and pkg/cli alone maps errors to exit statuses.
package arch
