// Package kernel is espgw's kernel suite: tests that need a kernel with ESP (esp4, XFRM
// encapsulation, AEAD) and that therefore run only inside the test VM (test/vm), never on a
// host whose kernel lacks ESP.
//
// Every test file carries the build tag vmtest, so `go test ./...` and `go vet ./...` on the
// host see only this file. `make vmtest` builds the suite with
//
//	CGO_ENABLED=0 go test -c -tags vmtest ./test/kernel
//
// boots the VM (test/vm/run-in-vm.sh) and runs it there with ESPGW_VM=1. Run anywhere else,
// the suite fails in TestMain instead of skipping.
//
// Tests that mostly wait (daemons negotiating, lifetimes running out) are parallel: each test
// builds its own namespaces, so they only share the VM's CPUs.
package kernel
