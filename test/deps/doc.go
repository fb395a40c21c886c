// Package deps holds the fresh-machine test: every program and file that espgw's tests and demo
// run or load must come from a Debian package that `make deps` installs by name, or from a hard
// dependency of one. It exists because a package that is only Recommended (charon's openssl and
// gcm plugins) was installed by hand where CI ran, so CI stayed green while `make demo` failed on
// a fresh Debian 12.
package deps
