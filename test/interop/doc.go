// Package interop holds espgw's acceptance tests: the real espgw binary runs in network
// namespaces against strongSwan (charon with kernel-libipsec, IKEv1) or against a second
// espgw, is driven through its CLI (`espgw up`, `espgw status --json`), and the wire is
// checked with tcpdump and tshark using the keys both sides export. TestKeymatMatchesCharon
// recomputes package ike/keymat's derivations from two charons' captures and key logs.
//
// The tests need root, strongSwan, tcpdump and tshark; without them they skip (or fail with
// ESPGW_REQUIRE_INTEROP=1). TestMain builds ./cmd/espgw once; ESPGW_BIN selects a prebuilt
// binary instead.
//
// The lossy negotiation scenario (30 % of IKE datagrams dropped both ways, ten
// negotiations, DPD on and off) is opt-in and not part of make test: it takes several
// minutes and is random by design. Run it with
//
//	go test -tags lossy -run TestLossyNegotiation -v ./test/interop/
package interop
