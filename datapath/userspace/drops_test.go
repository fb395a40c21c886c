package userspace

import "testing"

func TestDropCountsNamesEveryReason(t *testing.T) {
	var d Datapath
	d.drops.inc(DropAuth)
	d.drops.add(DropReplay, 2)
	c, err := d.DropCounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != int(numDropReasons) || c["icv"] != 1 || c["replay"] != 2 || c["no_sa"] != 0 {
		t.Errorf("DropCounts() = %v, want all %d reasons with icv 1, replay 2", c, numDropReasons)
	}
}
