package isakmp

import (
	"errors"
	"testing"
)

// saPhase1 is an SA payload with generic header: SA at 0, proposal at 12, transform at 20,
// attributes at 28 (the life duration TLV at 40).
const saPhase1 = `00 00 0030 00000001 00000001
	00 00 0024 01 01 00 01
	00 00 001c 01 01 0000  8001 0007  800e 0080  800b 0001  000c 0004 00015180`

// mutate returns the decoded hex s with the bytes at the given offsets replaced.
func mutate(s string, at map[int]byte) []byte {
	b := unhex(s)
	for off, v := range at {
		b[off] = v
	}
	return b
}

// repeatChain returns n payloads of type t, each a generic header and body, chained.
func repeatChain(n int, t PayloadType, body []byte) []byte {
	ps := make([]Payload, n)
	for i := range ps {
		ps[i] = &Unknown{PayloadType: t, Data: body}
	}
	return AppendPayloads(nil, ps)
}

func manyProposals(n int) []byte {
	sa := &SA{DOI: DOIIPsec, Situation: SituationIdentityOnly}
	for range n {
		sa.Proposals = append(sa.Proposals, Proposal{Number: 1, ProtocolID: ProtoESP, Transforms: []Transform{{ID: 3}}})
	}
	return AppendPayloads(nil, []Payload{sa})
}

func manyAttributes(n int) []byte {
	tr := Transform{ID: 3}
	for range n {
		tr.Attributes = append(tr.Attributes, BasicAttribute(IPsecAttrAuthAlgorithm, AuthHMACSHA1))
	}
	return AppendPayloads(nil, []Payload{&SA{DOI: DOIIPsec, Situation: SituationIdentityOnly,
		Proposals: []Proposal{{Number: 1, ProtocolID: ProtoESP, Transforms: []Transform{tr}}}}})
}

// manySPIs is a Delete payload with n 1-byte SPIs.
func manySPIs(n int) []byte {
	d := &Delete{DOI: DOIIPsec, ProtocolID: ProtoESP, SPISize: 1}
	for range n {
		d.SPIs = append(d.SPIs, []byte{1})
	}
	return AppendPayloads(nil, []Payload{d})
}

func TestDecodePayloadsErrors(t *testing.T) {
	tests := []struct {
		name   string
		first  PayloadType
		b      []byte
		field  string
		value  any
		notify NotifyType
	}{
		{"truncated generic header", PayloadSA, unhex(`0000`), "SA payload header size", 2, NotifyPayloadMalformed},
		{"length below generic header", PayloadKE, unhex(`00000003`), "KE payload length", 3, NotifyPayloadMalformed},
		{"length beyond buffer", PayloadKE, unhex(`00000009 aabbccdd`), "KE payload length", 9, NotifyPayloadMalformed},
		{"next payload beyond buffer", PayloadKE, unhex(`0a000008 aabbccdd`), "NONCE payload header size", 0, NotifyPayloadMalformed},
		{"SA too short", PayloadSA, unhex(`0000000b 00000001 000000`), "SA payload length", 11, NotifyPayloadMalformed},
		{"SA secrecy situation", PayloadSA, unhex(`0000000c 00000001 00000003`), "SA situation", uint32(3), NotifySituationNotSupported},
		{"SA without proposal", PayloadSA, unhex(`0000000c 00000001 00000001`), "proposal header size", 0, NotifyPayloadMalformed},
		{"proposal length 3", PayloadSA, unhex(`00000010 00000001 00000001 00000003`), "proposal length", 3, NotifyPayloadMalformed},
		{"proposal chained to a transform", PayloadSA, mutate(saPhase1, map[int]byte{12: 3}), "proposal next payload", PayloadTransform, NotifyBadProposalSyntax},
		{"proposal chained to nothing", PayloadSA, mutate(saPhase1, map[int]byte{12: 2}), "proposal header size", 0, NotifyPayloadMalformed},
		{"SPI beyond proposal", PayloadSA, mutate(saPhase1, map[int]byte{18: 40}), "proposal SPI size", 40, NotifyPayloadMalformed},
		{"no transforms", PayloadSA, mutate(saPhase1, map[int]byte{19: 0}), "proposal transform count", 0, NotifyBadProposalSyntax},
		{"more transforms counted than chained", PayloadSA, mutate(saPhase1, map[int]byte{19: 2}), "proposal transform count", 2, NotifyBadProposalSyntax},
		{"more transforms counted than fit", PayloadSA, mutate(saPhase1, map[int]byte{19: 5}), "proposal transform count", 5, NotifyBadProposalSyntax},
		{"more transforms chained than counted", PayloadSA, mutate(saPhase1, map[int]byte{20: 3}), "proposal transform count", 1, NotifyBadProposalSyntax},
		{"transform chained to a KE", PayloadSA, mutate(saPhase1, map[int]byte{20: 4}), "transform next payload", PayloadKE, NotifyBadProposalSyntax},
		{"transform too short", PayloadSA, mutate(saPhase1, map[int]byte{23: 7}), "transform length", 7, NotifyPayloadMalformed},
		{"transform beyond proposal", PayloadSA, mutate(saPhase1, map[int]byte{23: 0x1d}), "transform length", 29, NotifyPayloadMalformed},
		{"bytes after last transform", PayloadSA, mutate(saPhase1, map[int]byte{23: 0x14}), "bytes after last transform", 8, NotifyBadProposalSyntax},
		{"bytes after last proposal", PayloadSA, mutate(saPhase1, map[int]byte{15: 0x1c, 23: 0x14}), "bytes after last proposal", 8, NotifyBadProposalSyntax},
		{"SA shorter than its proposal", PayloadSA, mutate(saPhase1, map[int]byte{3: 0x2f}), "proposal length", 36, NotifyPayloadMalformed},
		{"TLV attribute beyond transform", PayloadSA, mutate(saPhase1, map[int]byte{43: 5}), "attribute 12 length", 5, NotifyBadProposalSyntax},
		{"truncated attribute", PayloadSA, mutate(saPhase1, map[int]byte{23: 0x16}), "attribute header size", 2, NotifyBadProposalSyntax},
		{"too many proposals", PayloadSA, manyProposals(MaxProposals + 1), "proposal count", MaxProposals + 1, NotifyBadProposalSyntax},
		{"too many attributes", PayloadSA, manyAttributes(MaxAttributes + 1), "attribute count", MaxAttributes + 1, NotifyBadProposalSyntax},
		{"too many payloads", PayloadVendorID, repeatChain(MaxPayloads+1, PayloadVendorID, nil), "payload count", MaxPayloads + 1, NotifyPayloadMalformed},
		{"ID too short", PayloadID, unhex(`00000007 010000`), "ID payload length", 7, NotifyPayloadMalformed},
		{"ID IPv4 address of 5 bytes", PayloadID, unhex(`0000000d 01 11 01f4 c000020101`), "ID_IPV4_ADDR data length", 5, NotifyInvalidIDInformation},
		{"ID IPv6 subnet of 16 bytes", PayloadID, unhex(`00000018 06 00 0000 20010db8000000000000000000000000`), "ID_IPV6_ADDR_SUBNET data length", 16, NotifyInvalidIDInformation},
		{"CERT without encoding", PayloadCERT, unhex(`00000004`), "CERT payload length", 4, NotifyPayloadMalformed},
		{"nonce of 7 bytes", PayloadNonce, unhex(`0000000b 01020304050607`), "NONCE payload length", 11, NotifyPayloadMalformed},
		{"nonce of 257 bytes", PayloadNonce, repeatChain(1, PayloadNonce, make([]byte, 257)), "NONCE data length", 257, NotifyPayloadMalformed},
		{"N too short", PayloadNotification, unhex(`0000000b 00000001 01 00 00`), "N payload length", 11, NotifyPayloadMalformed},
		{"N SPI beyond payload", PayloadNotification, unhex(`0000000c 00000001 01 10 6002`), "N SPI size", 16, NotifyPayloadMalformed},
		{"D fewer SPIs than counted", PayloadDelete, unhex(`00000010 00000001 03 04 0002 11111111`), "D number of SPIs", 2, NotifyPayloadMalformed},
		{"D bytes after SPIs", PayloadDelete, unhex(`00000012 00000001 03 04 0001 11111111 0000`), "D number of SPIs", 1, NotifyPayloadMalformed},
		{"D too many SPIs", PayloadDelete, manySPIs(MaxDeleteSPIs + 1), "D number of SPIs", MaxDeleteSPIs + 1, NotifyPayloadMalformed},
		{"D SPI size 0", PayloadDelete, unhex(`0000000c 00000001 03 00 ffff`), "D SPI size", 0, NotifyPayloadMalformed},
		{"NAT-OA FQDN", PayloadNATOA, unhex(`0000000c 02 000000 c0000201`), "NAT-OA ID type", IDFQDN, NotifyPayloadMalformed},
		{"NAT-OA short IPv6", PayloadNATOADraft, unhex(`0000000c 05 000000 20010db8`), "NAT-OA address length", 4, NotifyPayloadMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, raw, n, err := DecodePayloads(tt.first, tt.b)
			checkParseError(t, err, tt.field, tt.value, tt.notify)
			if ps != nil || raw != nil || n != 0 {
				t.Errorf("error returned with %d payloads, %d raw, n %d", len(ps), len(raw), n)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name   string
		msg    string
		field  string
		value  any
		notify NotifyType
	}{
		{"shorter than a header", `0101010101010101 0000000000000000 00 10 02 00 00000000 0000`, "message length", 26, NotifyPayloadMalformed},
		{"IKEv2", `0101010101010101 0000000000000000 00 20 22 08 00000000 0000001c`, "major version", uint8(2), NotifyInvalidMajorVersion},
		{"minor version 1", `0101010101010101 0000000000000000 00 11 02 00 00000000 0000001c`, "minor version", uint8(1), NotifyInvalidMinorVersion},
		{"header length below 28", `0101010101010101 0000000000000000 00 10 02 00 00000000 00000014`, "header length", uint32(20), NotifyUnequalPayloadLengths},
		{"header length beyond datagram", `0101010101010101 0000000000000000 00 10 02 00 00000000 00000064`, "header length", uint32(100), NotifyUnequalPayloadLengths},
		{"encrypted, header length short", `0101010101010101 0000000000000000 08 10 05 01 00000000 0000001c 00000000`, "header length", uint32(28), NotifyUnequalPayloadLengths},
		{"bytes after last payload", `0101010101010101 0000000000000000 0d 10 02 00 00000000 00000028
			00 00 0008 aabbccdd 00000000`, "bytes after last payload", 4, NotifyUnequalPayloadLengths},
		{"bytes without payloads", `0101010101010101 0000000000000000 00 10 02 00 00000000 00000020 00000000`, "bytes after last payload", 4, NotifyUnequalPayloadLengths},
		{"payload error", `0101010101010101 0000000000000000 0d 10 02 00 00000000 00000024 00 00 0009 aabbccdd`, "VID payload length", 9, NotifyPayloadMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(unhex(tt.msg))
			checkParseError(t, err, tt.field, tt.value, tt.notify)
			if m != nil {
				t.Errorf("error returned with a message")
			}
		})
	}
}

func checkParseError(t *testing.T, err error, field string, value any, notify NotifyType) {
	t.Helper()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v, want a *ParseError", err)
	}
	if pe.Field != field || pe.Value != value || pe.Notify() != notify {
		t.Errorf("error %q (value %T, notify %v), want field %q value %v (%T) notify %v",
			err, pe.Value, pe.Notify(), field, value, value, notify)
	}
}

func TestParseErrorMessage(t *testing.T) {
	_, _, _, err := DecodePayloads(PayloadSA, unhex(`00000010 00000001 00000001 00000003`))
	if got, want := err.Error(), "isakmp: proposal length 3, want >= 8"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
