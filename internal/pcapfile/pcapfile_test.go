package pcapfile

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// udpFrame builds an Ethernet frame with an IPv4 UDP datagram; frag sets the fragment offset.
func udpFrame(sport, dport uint16, payload []byte, frag uint16) []byte {
	eth := make([]byte, 14)
	binary.BigEndian.PutUint16(eth[12:], 0x0800)
	ip := make([]byte, 20)
	ip[0], ip[9] = 0x45, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], frag)
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp, sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(append(eth, ip...), udp...), payload...)
}

func pcap(frames ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = append(b, make([]byte, 16)...)
	b = binary.LittleEndian.AppendUint32(b, 1) // Ethernet
	for _, f := range frames {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		b = append(append(b, rec...), f...)
	}
	return b
}

func TestIKEMessages(t *testing.T) {
	ike := []byte("an IKE message")
	b := pcap(
		udpFrame(500, 500, ike, 0),
		udpFrame(4500, 4500, append([]byte{0, 0, 0, 0}, ike...), 0), // non-ESP marker
		udpFrame(4500, 4500, append([]byte{0, 0, 0, 1}, ike...), 0), // ESP in UDP
		udpFrame(500, 500, ike, 0x2000),                             // a fragment
		udpFrame(53, 53, ike, 0),
	)
	msgs, err := IKEMessages(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].Frame != 1 || msgs[1].Frame != 2 || !bytes.Equal(msgs[0].Data, ike) || !bytes.Equal(msgs[1].Data, ike) {
		t.Errorf("IKEMessages = %+v, want frames 1 and 2 with the IKE bytes (marker removed)", msgs)
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", b[:10], "pcap header"},
		{"magic", append([]byte{1, 2, 3, 4}, b[4:]...), "magic"},
		{"truncated record", b[:len(b)-1], "captured length"},
	} {
		if _, err := IKEMessages(tt.b); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one about %q", tt.name, err, tt.want)
		}
	}
}
