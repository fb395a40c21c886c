package isakmp

import (
	"bytes"
	"reflect"
	"testing"
)

func TestAttributeForms(t *testing.T) {
	tests := []struct {
		name  string
		a     Attribute
		wire  string
		value uint64
	}{
		{"basic", BasicAttribute(AttrEncryptionAlgorithm, EncAESCBC), `8001 0007`, 7},
		{"life fits TV", LifeAttribute(AttrLifeDuration, 3600), `800c 0e10`, 3600},
		{"life at TV limit", LifeAttribute(AttrLifeDuration, 0xffff), `800c ffff`, 0xffff},
		{"life 4 bytes", LifeAttribute(AttrLifeDuration, 86400), `000c 0004 00015180`, 86400},
		{"life at 4-byte limit", LifeAttribute(IPsecAttrLifeDuration, 0xffffffff), `0002 0004 ffffffff`, 0xffffffff},
		{"life 8 bytes", LifeAttribute(IPsecAttrLifeDuration, 1<<40), `0002 0008 0000010000000000`, 1 << 40},
		{"variable 3 bytes", VarAttribute(IPsecAttrLifeDuration, []byte{1, 2, 3}), `0002 0003 010203`, 0x010203},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := unhex(tt.wire)
			if got := AppendAttributes(nil, []Attribute{tt.a}); !bytes.Equal(got, wire) {
				t.Errorf("AppendAttributes = %x, want %x", got, wire)
			}
			as, err := ParseAttributes(wire)
			if err != nil {
				t.Fatal(err)
			}
			if len(as) != 1 || !reflect.DeepEqual(as[0], tt.a) {
				t.Errorf("ParseAttributes = %+v, want %+v", as, tt.a)
			}
			if v, err := as[0].Uint(); err != nil || v != tt.value {
				t.Errorf("Uint() = %d, %v; want %d", v, err, tt.value)
			}
		})
	}
}

func TestAttributeUintErrors(t *testing.T) {
	tests := []struct {
		name  string
		a     Attribute
		field string
		value int
	}{
		{"empty TLV", VarAttribute(AttrGroupPrime, nil), "attribute 6 value length", 0},
		{"9-byte TLV", VarAttribute(AttrLifeDuration, make([]byte, 9)), "attribute 12 value length", 9},
		{"basic of 3 bytes", Attribute{Type: AttrKeyLength, Basic: true, Value: []byte{1, 2, 3}}, "attribute 14 value length", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.a.Uint()
			checkParseError(t, err, tt.field, tt.value, NotifyPayloadMalformed)
		})
	}
}

func TestAppendAttributesPanics(t *testing.T) {
	for _, a := range []Attribute{
		{Type: AttrKeyLength, Basic: true, Value: []byte{1}},
		VarAttribute(AttrGroupPrime, make([]byte, 0x10000)),
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("AppendAttributes(%d-byte basic %t) did not panic", len(a.Value), a.Basic)
				}
			}()
			AppendAttributes(nil, []Attribute{a})
		}()
	}
}

func TestBasicOnly(t *testing.T) {
	tests := []struct {
		proto ProtocolID
		class uint16
		basic bool
	}{
		{ProtoISAKMP, AttrEncryptionAlgorithm, true},
		{ProtoISAKMP, AttrGroupDescription, true},
		{ProtoISAKMP, AttrGroupPrime, false},
		{ProtoISAKMP, AttrGroupCurveB, false},
		{ProtoISAKMP, AttrLifeType, true},
		{ProtoISAKMP, AttrLifeDuration, false},
		{ProtoISAKMP, AttrKeyLength, true},
		{ProtoISAKMP, AttrFieldSize, true},
		{ProtoISAKMP, AttrGroupOrder, false},
		{ProtoISAKMP, 0, false},
		{ProtoISAKMP, 17, false},
		{ProtoESP, IPsecAttrLifeType, true},
		{ProtoESP, IPsecAttrLifeDuration, false},
		{ProtoESP, IPsecAttrEncapsulationMode, true},
		{ProtoAH, IPsecAttrAuthAlgorithm, true},
		{ProtoESP, IPsecAttrKeyLength, true},
		{ProtoESP, IPsecAttrCompressDictSize, true},
		{ProtoIPComp, IPsecAttrCompressPrivAlg, false},
		{ProtoESP, 10, false},
	}
	for _, tt := range tests {
		if got := BasicOnly(tt.proto, tt.class); got != tt.basic {
			t.Errorf("BasicOnly(%v, %d) = %t, want %t", tt.proto, tt.class, got, tt.basic)
		}
	}
}
