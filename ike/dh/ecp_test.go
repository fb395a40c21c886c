package dh

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/espgw/espgw/internal/testutil"
)

// rfc5903Vectors are the test vectors of RFC 5903 section 8: private values i and r,
// public values gi and gr (x | y), and the shared secret girx.
var rfc5903Vectors = []struct {
	id          uint16
	i, gix, giy string
	r, grx, gry string
	girx        string
}{
	{
		id:   19, // section 8.1
		i:    "c88f01f510d9ac3f70a292daa2316de544e9aab8afe84049c62a9c57862d1433",
		gix:  "dad0b65394221cf9b051e1feca5787d098dfe637fc90b9ef945d0c3772581180",
		giy:  "5271a0461cdb8252d61f1c456fa3e59ab1f45b33accf5f58389e0577b8990bb3",
		r:    "c6ef9c5d78ae012a011164acb397ce2088685d8f06bf9be0b283ab46476bee53",
		grx:  "d12dfb5289c8d4f81208b70270398c342296970a0bccb74c736fc7554494bf63",
		gry:  "56fbf3ca366cc23e8157854c13c58d6aac23f046ada30f8353e74f33039872ab",
		girx: "d6840f6b42f6edafd13116e0e12565202fef8e9ece7dce03812464d04b9442de",
	},
	{
		id:   20, // section 8.2
		i:    "099f3c7034d4a2c699884d73a375a67f7624ef7c6b3c0f160647b67414dce655e35b538041e649ee3faef896783ab194",
		gix:  "667842d7d180ac2cde6f74f37551f55755c7645c20ef73e31634fe72b4c55ee6de3ac808acb4bdb4c88732aee95f41aa",
		giy:  "9482ed1fc0eeb9cafc4984625ccfc23f65032149e0e144ada024181535a0f38eeb9fcff3c2c947dae69b4c634573a81c",
		r:    "41cb0779b4bdb85d47846725fbec3c9430fab46cc8dc5060855cc9bda0aa2942e0308312916b8ed2960e4bd55a7448fc",
		grx:  "e558dbef53eecde3d3fccfc1aea08a89a987475d12fd950d83cfa41732bc509d0d1ac43a0336def96fda41d0774a3571",
		gry:  "dcfbec7aacf3196472169e838430367f66eebe3c6e70c416dd5f0c68759dd1fff83fa40142209dff5eaad96db9e6386c",
		girx: "11187331c279962d93d604243fd592cb9d0a926f422e47187521287e7156c5c4d603135569b9e9d09cf5d4a270f59746",
	},
}

func TestRFC5903Vectors(t *testing.T) {
	for _, v := range rfc5903Vectors {
		t.Run(fmt.Sprint(v.id), func(t *testing.T) {
			g := mustGroup(t, v.id)
			// The private values go in through rand, as GenerateKey reads them.
			ki, err := g.GenerateKey(bytes.NewReader(testutil.Unhex(t, v.i)))
			if err != nil {
				t.Fatal(err)
			}
			kr, err := g.GenerateKey(bytes.NewReader(testutil.Unhex(t, v.r)))
			if err != nil {
				t.Fatal(err)
			}
			gi, gr := testutil.Unhex(t, v.gix+v.giy), testutil.Unhex(t, v.grx+v.gry)
			if !bytes.Equal(ki.Public(), gi) {
				t.Fatalf("gi = %x, want %x", ki.Public(), gi)
			}
			if !bytes.Equal(kr.Public(), gr) {
				t.Fatalf("gr = %x, want %x", kr.Public(), gr)
			}
			want := testutil.Unhex(t, v.girx)
			for name, z := range map[string]func() ([]byte, error){
				"i*gr": func() ([]byte, error) { return ki.SharedSecret(gr) },
				"r*gi": func() ([]byte, error) { return kr.SharedSecret(gi) },
			} {
				got, err := z()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s = %x, want %x", name, got, want)
				}
			}
		})
	}
}

func TestECPInvalidPublic(t *testing.T) {
	for _, v := range rfc5903Vectors {
		g := mustGroup(t, v.id)
		k, err := g.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		valid := testutil.Unhex(t, v.grx+v.gry)
		offCurve := bytes.Clone(valid)
		offCurve[len(offCurve)-1] ^= 1
		n := len(valid) / 2
		tests := []struct {
			name string
			y    []byte
		}{
			{"off curve", offCurve},
			{"zero point", make([]byte, len(valid))},
			{"coordinates >= p", bytes.Repeat([]byte{0xff}, len(valid))},
			{"x only", valid[:n]},
			{"with 0x04 prefix", append([]byte{4}, valid...)},
			{"one byte short", valid[1:]},
			{"empty", nil},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%d/%s", v.id, tt.name), func(t *testing.T) {
				z, err := k.SharedSecret(tt.y)
				if !errors.Is(err, ErrInvalidPublic) {
					t.Fatalf("SharedSecret = %x, %v; want ErrInvalidPublic", z, err)
				}
			})
		}
	}
}
