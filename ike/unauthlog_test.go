package ike

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/espgw/espgw/model"

	"github.com/espgw/espgw/conn/bindtest"
	"github.com/espgw/espgw/ike/clock/clocktest"
)

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// match returns the records at level or above whose message satisfies f.
func (r *logRecorder) match(level slog.Level, f func(msg string) bool) []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []slog.Record
	for _, rec := range r.records {
		if rec.Level >= level && f(rec.Message) {
			out = append(out, rec)
		}
	}
	return out
}

// occurrences returns how many lines logged msg itself and how many times the summary
// lines ("msg: N more suppressed") say it was suppressed.
func (r *logRecorder) occurrences(msg string) (logged, suppressed int) {
	logged = len(r.match(slog.LevelWarn, func(m string) bool { return m == msg }))
	for _, rec := range r.match(slog.LevelWarn, func(m string) bool { return strings.HasPrefix(m, msg+": ") }) {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "suppressed" {
				suppressed += int(a.Value.Int64())
			}
			return true
		})
	}
	return logged, suppressed
}

// firstMessageOf returns the first message (MM1 or AM1) an initiator configured with c sends.
func firstMessageOf(t *testing.T, c model.Connection) []byte {
	t.Helper()
	bind, _ := bindtest.NewPair()
	n := startNode(t, "template", bind, 0xc0000000, RetransmitPolicy{}, c)
	n.stop()
	n.e.mu.Lock()
	n.e.startPhase1(n.e.conns[c.Name])
	n.e.mu.Unlock()
	n.e.work.Wait()
	sent := bind.Sent()
	return sent[len(sent)-1].Data
}

// A flood of spoofed MM1s logs each reason once per peer and window plus a summary, not a
// line per packet; the summaries account for every packet.
func TestUnauthenticatedFailuresRateLimited(t *testing.T) {
	const flood = 2000
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "k"}
	spoofed := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, byte(i >> 8), byte(i)}) }
	// For the half-open limit, fillPeers more peers each get maxHalfOpenPerPeer half-open
	// SAs from the first packets, so that all half-open slots are taken.
	const fillPeers = maxHalfOpen / maxHalfOpenPerPeer
	fillPeer := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}) }
	tests := []struct {
		name    string
		edit    func(b *model.Connection) []model.Connection
		rp      RetransmitPolicy
		from    func(i int) netip.Addr // source of packet i
		fill    int                    // leading packets that are not part of the flood
		msg     string
		lines   int  // lines with msg itself
		count   int  // lines plus suppressed
		atLeast bool // count is a lower bound
		settle  func(n *node) bool
	}{
		{name: "no connection for the address", from: func(int) netip.Addr { return netip.MustParseAddr("192.0.2.50") },
			msg: "no connection configured for peer", lines: 1, count: flood},
		{name: "no connection, spoofed sources", from: spoofed,
			msg: "no connection configured for peer", lines: maxUnauthLogKeys + 1, count: flood},
		{name: "IKE proposal mismatch on MM1", from: func(int) netip.Addr { return addrA },
			edit: func(b *model.Connection) []model.Connection {
				b.IKE.Proposals = mustIKE(t, "aes256-sha256-modp2048")
				return nil
			},
			msg: "negotiation failed on the peer's first message", lines: 1, count: flood},
		{name: "phase-1 mode mismatch", from: func(int) netip.Addr { return addrA },
			edit: func(b *model.Connection) []model.Connection {
				b.IKE.Mode = model.ModeAggressive
				return nil
			},
			msg: "peer uses a different phase-1 mode than configured", lines: 1, count: flood},
		{name: "half-open SAs time out", from: func(int) netip.Addr { return addrA },
			rp:  RetransmitPolicy{Initial: 10 * time.Millisecond, MaxTries: 2, Timeout: 50 * time.Millisecond},
			msg: "half-open IKE SA timed out", lines: 1,
			// Many are evicted by newer ones (at debug level); at least the last ones time out.
			count: maxHalfOpenPerPeer, atLeast: true,
			settle: func(n *node) bool {
				n.e.mu.Lock()
				defer n.e.mu.Unlock()
				return n.e.halfOpen == 0
			}},
		// All half-open slots taken by other peers: the flood from addrA takes slots from
		// the peer with the most (evicted at debug level, nothing to log) until it holds its
		// own share, then evicts its own; nobody is refused (review finding 3).
		{name: "half-open limit reached",
			edit: func(b *model.Connection) []model.Connection {
				var more []model.Connection
				for i := range fillPeers {
					c := *b
					c.Name, c.RemoteAddress, c.Tunnels = fmt.Sprintf("fill%d", i), fillPeer(i), nil
					more = append(more, c)
				}
				return more
			},
			fill: fillPeers * maxHalfOpenPerPeer,
			from: func(i int) netip.Addr {
				if i < fillPeers*maxHalfOpenPerPeer {
					return fillPeer(i / maxHalfOpenPerPeer)
				}
				return addrA
			},
			msg: "too many half-open IKE SAs, dropping new one", lines: 0, count: 0,
			settle: func(n *node) bool {
				n.e.mu.Lock()
				defer n.e.mu.Unlock()
				fromA := 0
				for _, sa := range n.e.ikeSAs {
					if sa.remote.Addr() == addrA {
						fromA++
					}
				}
				return fromA == maxHalfOpenPerPeer && n.e.halfOpen == maxHalfOpen
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := connPair(t, pc)
			mm1 := firstMessageOf(t, ca)
			conns := []model.Connection{cb}
			if tt.edit != nil {
				conns = append(conns, tt.edit(&conns[0])...)
			}
			rec := &logRecorder{}
			_, bb := bindtest.NewPair()
			rp := tt.rp
			if rp.Initial == 0 {
				rp = RetransmitPolicy{Initial: time.Minute, MaxTries: 2, Timeout: time.Minute}
			}
			b := New(Options{Logger: slog.New(rec), Bind: bb, Kernel: newFakeKernel(0xb0000000), Retransmit: rp})
			if err := b.Configure(conns); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			n := &node{e: b, bind: bb, cancel: cancel, done: make(chan struct{})}
			go func() { defer close(n.done); b.Run(ctx) }()
			t.Cleanup(n.stop)

			// Packets go through the Bind in chunks that fit its queue; a malformed packet
			// after each chunk tells when the engine has handled it.
			sentinels := 0
			for i := 0; i < tt.fill+flood; {
				for end := min(i+500, tt.fill+flood); i < end; i++ {
					msg := append([]byte(nil), mm1...)
					msg[0], msg[1], msg[2] = byte(i>>16), byte(i>>8), byte(i)
					bb.Inject(msg, netip.AddrPortFrom(addrB, 500), netip.AddrPortFrom(tt.from(i), 500))
				}
				sentinels++
				bb.Inject([]byte("not ISAKMP"), netip.AddrPortFrom(addrB, 500), netip.AddrPortFrom(addrEvil, 500))
				waitFor(t, "engine to handle the packets", func() bool {
					return len(rec.match(slog.LevelDebug, func(m string) bool { return m == "dropping malformed message" })) == sentinels
				})
			}
			if tt.settle != nil {
				waitFor(t, "half-open SAs to time out", func() bool { return tt.settle(n) })
			}
			n.stop() // writes the pending summaries

			lines, suppressed := rec.occurrences(tt.msg)
			if lines != tt.lines {
				t.Errorf("%q logged %d times for %d packets, want %d", tt.msg, lines, flood, tt.lines)
			}
			if got := lines + suppressed; got != tt.count && !(tt.atLeast && got > tt.count) {
				t.Errorf("%q logged %d times and summed up %d more, want %d in all (at least: %v)", tt.msg, lines, suppressed, tt.count, tt.atLeast)
			}
			// Nothing else may log per packet either: allow each first line and its summary.
			if visible := rec.match(slog.LevelInfo, func(string) bool { return true }); len(visible) > 2*tt.lines {
				for _, r := range visible[:min(len(visible), 5)] {
					t.Logf("%v %s", r.Level, r.Message)
				}
				t.Errorf("%d log records at info or above for %d packets, want at most %d", len(visible), flood, 2*tt.lines)
			}
			if errs := b.Status().Errors; len(errs) > tt.lines {
				t.Errorf("%d errors kept for status, want at most %d", len(errs), tt.lines)
			}
		})
	}
}

// The limiter's windows: the first occurrence is logged, the rest of the window summed up
// at its end, at most one summary per window, and a quiet window forgets the peer.
func TestUnauthLogWindows(t *testing.T) {
	rec := &logRecorder{}
	bind, _ := bindtest.NewPair()
	clk := clocktest.New()
	e := New(Options{Logger: slog.New(rec), Bind: bind, Kernel: newFakeKernel(0), Clock: clk})
	peer := netip.MustParseAddr("192.0.2.77")
	logN := func(n int) {
		e.mu.Lock()
		defer e.mu.Unlock()
		for range n {
			e.logUnauth("test reason", peer, "peer", peer)
		}
	}
	summaries := func() int {
		return len(rec.match(slog.LevelWarn, func(m string) bool { return strings.HasPrefix(m, "test reason: ") }))
	}
	logN(5)
	if lines, _ := rec.occurrences("test reason"); lines != 1 {
		t.Fatalf("5 occurrences logged %d lines, want 1", lines)
	}
	clk.Advance(unauthLogWindow)
	if n := summaries(); n != 1 {
		t.Fatalf("%d summaries at the end of the first window, want 1", n)
	}
	if _, suppressed := rec.occurrences("test reason"); suppressed != 4 {
		t.Errorf("summary says %d suppressed, want 4", suppressed)
	}
	logN(3) // in the next window: counted, not logged
	clk.Advance(unauthLogWindow - time.Nanosecond)
	if n := summaries(); n != 1 {
		t.Errorf("%d summaries before the end of the second window, want 1", n)
	}
	clk.Advance(time.Nanosecond)
	if n := summaries(); n != 2 {
		t.Errorf("%d summaries at the end of the second window, want 2", n)
	}
	lines, suppressed := rec.occurrences("test reason")
	if lines != 1 || suppressed != 7 {
		t.Errorf("after two windows: %d lines, %d suppressed, want 1 and 7", lines, suppressed)
	}
	// A quiet window forgets the peer; the next occurrence is logged again.
	clk.Advance(unauthLogWindow)
	e.mu.Lock()
	entries := len(e.unauth.entries)
	e.mu.Unlock()
	if entries != 0 {
		t.Errorf("%d limiter entries after a quiet window, want the peer forgotten", entries)
	}
	logN(1)
	if lines, _ := rec.occurrences("test reason"); lines != 2 {
		t.Errorf("after a quiet window: %d lines, want 2", lines)
	}
	if n := summaries(); n != 2 {
		t.Errorf("%d summaries, want 2", n)
	}
	e.mu.Lock()
	e.flushUnauthLog()
	e.mu.Unlock()
}

// Failures after the peer has proven it receives our messages are not rate-limited: each
// pre-shared key mismatch at MM5 is logged as an error.
func TestAuthenticatedFailuresLogged(t *testing.T) {
	pc := pairConfig{mode: model.ModeMain, ike: "3des-sha1-modp1024", esp: "3des-sha1", pskA: "right", pskB: "wrong"}
	ba, bb := bindtest.NewPair()
	ca, cb := connPair(t, pc)
	a := startNode(t, "A", ba, 0xa0000000, RetransmitPolicy{}, ca)
	rec := &logRecorder{}
	b := New(Options{Logger: slog.New(rec), Bind: bb, Kernel: newFakeKernel(0xb0000000)})
	if err := b.Configure([]model.Connection{cb}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pskErrors := func() int {
		return len(rec.match(slog.LevelError, func(m string) bool { return m == "negotiation failed" }))
	}
	for i := 1; i <= 3; i++ {
		if err := a.e.Up(upCtx(t), "peer", ""); !errors.Is(err, ErrPSKMismatch) {
			t.Fatalf("Up: %v, want a pre-shared key mismatch", err)
		}
		waitFor(t, fmt.Sprintf("responder error %d", i), func() bool { return pskErrors() == i })
	}
}
