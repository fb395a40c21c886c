package replay

import "testing"

// step is one received packet: Check's answer before the ICV and whether Accept runs
// (false models a packet whose ICV failed).
type step struct {
	seq      uint64
	check    bool
	verified bool
}

func TestFilter(t *testing.T) {
	const w = 64
	tests := []struct {
		name   string
		window uint32
		steps  []step
	}{
		{"in order", w, []step{{1, true, true}, {2, true, true}, {3, true, true}, {4, true, true}}},
		{"zero never valid", w, []step{{0, false, false}, {1, true, true}, {0, false, false}}},
		{"duplicate", w, []step{{1, true, true}, {1, false, false}, {2, true, true}, {1, false, false}, {2, false, false}}},
		{"reordered inside window", w, []step{{5, true, true}, {3, true, true}, {4, true, true}, {1, true, true}, {3, false, false}, {2, true, true}}},
		{"window edge", w, []step{
			{w, true, true},
			{1, true, true},       // last-seq = 63 < 64: inside
			{w + 1, true, true},   // 1 falls out now
			{1, false, false},     // last-seq = 64: outside
			{2, true, true},       // last-seq = 63: inside
			{w + 1, false, false}, // duplicate of the highest
			{2*w + 1, true, true}, // jump by exactly one window
			{w + 1, false, false}, // old beyond window
			{w + 2, true, true},   // oldest slot in window, never seen
		}},
		{"jump far ahead clears the ring", w, []step{
			{1, true, true}, {2, true, true}, {1000000, true, true},
			{2, false, false}, {999999, true, true}, {999937, true, true}, {999936, false, false},
		}},
		{"failed ICV does not advance", w, []step{
			{1, true, true}, {100, true, false}, // forged: window stays at 1
			{2, true, true}, {100, true, true}, {100, false, false},
		}},
		{"larger window", 1024, []step{
			{2000, true, true}, {977, true, true}, {976, false, false}, {1500, true, true}, {1500, false, false},
		}},
		{"window below minimum is raised", 8, []step{
			{100, true, true}, {37, true, true}, {36, false, false},
		}},
		{"block boundaries", 128, []step{
			{63, true, true}, {64, true, true}, {127, true, true}, {128, true, true}, {191, true, true},
			{65, true, true}, {63, false, false}, {64, false, false}, {128, false, false},
		}},
		{"32-bit top", w, []step{
			{1<<32 - 2, true, true}, {1<<32 - 1, true, true}, {1<<32 - 2, false, false}, {1<<32 - 3, true, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(tt.window)
			for i, s := range tt.steps {
				if got := f.Check(s.seq); got != s.check {
					t.Fatalf("step %d: Check(%d) = %v, want %v (last %d, window %d)", i, s.seq, got, s.check, f.Last(), f.Window())
				}
				if s.verified {
					if !f.Accept(s.seq) {
						t.Fatalf("step %d: Accept(%d) = false after Check passed", i, s.seq)
					}
				}
			}
		})
	}
}

func TestAcceptTwice(t *testing.T) {
	f := New(64)
	if !f.Accept(7) || f.Accept(7) {
		t.Fatal("second Accept of the same sequence number must fail")
	}
}

func TestWindowSizes(t *testing.T) {
	for _, tt := range []struct{ in, want uint32 }{{0, 64}, {64, 64}, {65, 65}, {4096, 4096}, {1 << 30, MaxWindow}} {
		if got := New(tt.in).Window(); got != tt.want {
			t.Errorf("New(%d).Window() = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestExhaustiveAgainstModel compares the ring with a plain set over a pseudo-random walk.
func TestExhaustiveAgainstModel(t *testing.T) {
	for _, w := range []uint32{64, 65, 100, 200} {
		f := New(w)
		seen := map[uint64]bool{}
		var last uint64
		x := uint64(12345)
		for range 20000 {
			x = x*6364136223846793005 + 1442695040888963407
			seq := last + 8 - (x>>33)%(uint64(w)+24)
			if int64(seq) <= 0 {
				seq = 1 + (x>>40)%16
			}
			want := seq != 0 && !seen[seq] && (seq > last || last-seq < uint64(w))
			if got := f.Check(seq); got != want {
				t.Fatalf("window %d: Check(%d) = %v, want %v (last %d)", w, seq, got, want, last)
			}
			if want {
				f.Accept(seq)
				seen[seq] = true
				last = max(last, seq)
			}
		}
	}
}

func BenchmarkCheckAccept(b *testing.B) {
	f := New(1024)
	b.ReportAllocs()
	for i := range b.N {
		seq := uint64(i + 1)
		if f.Check(seq) {
			f.Accept(seq)
		}
	}
}
