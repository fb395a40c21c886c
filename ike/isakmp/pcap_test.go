package isakmp

import (
	"testing"

	"github.com/espgw/espgw/internal/pcapfile"
)

// capturedMessage is one ISAKMP message found in a capture file.
type capturedMessage struct {
	frame int // 1-based, as tshark numbers frames
	data  []byte
}

// readCapture returns the ISAKMP messages in a classic pcap file.
func readCapture(tb testing.TB, path string) []capturedMessage {
	tb.Helper()
	msgs, err := pcapfile.ReadIKE(path)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]capturedMessage, len(msgs))
	for i, m := range msgs {
		out[i] = capturedMessage{frame: m.Frame, data: m.Data}
	}
	return out
}
