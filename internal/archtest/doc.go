// Package archtest holds the test that keeps the packages layered as docs/ARCHITECTURE.md
// draws them: config → model → ike → datapath / loader, wired by daemon. It has no code.
package archtest
