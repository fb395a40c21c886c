package userspace

import (
	"context"
	"errors"
	"testing"

	"github.com/espgw/espgw/datapath"
)

// reservedSPIs counts the SPIs AllocSPI handed out that are neither installed nor released.
func (d *Datapath) reservedSPIs() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.reserved)
}

// TestReservedSPIReleased: DeleteSA releases an SPI that AllocSPI reserved and no SA was
// installed under (the quick mode failed), for the address it was reserved for only; an
// installed SA takes its reservation over.
func TestReservedSPIReleased(t *testing.T) {
	a, _ := lab(t)
	ctx := context.Background()
	tr := transform{"aes256gcm16", datapath.EncAESGCM16, 36, datapath.IntegNone, 0}
	var spi1, spi2 uint32
	steps := []struct {
		name      string
		do        func() error
		reserved  int
		installed bool // an inbound SA with spi2
	}{
		{"two SPIs reserved", func() (err error) {
			if spi1, err = a.dp.AllocSPI(ctx, outerA, outerB); err != nil {
				return err
			}
			spi2, err = a.dp.AllocSPI(ctx, outerA, outerB)
			return err
		}, 2, false},
		{"DeleteSA for another destination keeps it", func() error { return a.dp.DeleteSA(ctx, outerB, spi1) }, 2, false},
		{"DeleteSA releases it", func() error { return a.dp.DeleteSA(ctx, outerA, spi1) }, 1, false},
		{"releasing it again is not an error", func() error { return a.dp.DeleteSA(ctx, outerA, spi1) }, 1, false},
		{"AddSAPair takes the reservation over", func() error {
			pa, _ := saPairs(tr, true, 0x3003, spi2, 7)
			return a.dp.AddSAPair(ctx, pa)
		}, 0, true},
		{"DeleteSA removes the installed SA", func() error { return a.dp.DeleteSA(ctx, outerA, spi2) }, 0, false},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n := a.dp.reservedSPIs(); n != s.reserved {
			t.Errorf("%s: %d SPIs reserved, want %d", s.name, n, s.reserved)
		}
		_, err := a.dp.Counters(outerA, spi2)
		if installed := err == nil; installed != s.installed || !installed && !errors.Is(err, ErrNoSA) {
			t.Errorf("%s: inbound SA %08x: Counters error %v, want installed %v", s.name, spi2, err, s.installed)
		}
	}
}
