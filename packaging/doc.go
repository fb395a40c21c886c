// Package packaging holds no Go code: it is the Debian package recipe (nfpm.yaml,
// build-deb.sh, the systemd unit, the example configuration, maintainer scripts) and the
// Vagrant lab's provisioning scripts. Its tests build the package and check what it ships.
package packaging
