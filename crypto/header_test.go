package crypto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func testHeader(t *testing.T) (*Header, *MasterKey, *Keys, RecoveryKey) {
	t.Helper()
	m, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Wipe)
	k, err := DeriveKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	h, err := NewHeader(time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	rk, _ := NewRecoveryKey()
	s, err := NewRecoverySlot(m, rk, h.VaultID, "recovery")
	if err != nil {
		t.Fatal(err)
	}
	kdf, _ := NewKDFParams()
	h.Slots = append(h.Slots, *s, Slot{ID: "tpm-1", Type: SlotTPM, KDF: kdf,
		TPM: &TPMBlob{Public: []byte{1}, Private: []byte{2}, SRKName: []byte{3}}})
	return h, m, k, rk
}

func TestHeaderRoundTrip(t *testing.T) {
	h, m, k, rk := testHeader(t)
	b, err := h.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyHeader(k, b); err != nil {
		t.Fatal(err)
	}
	s, ok := got.Slot("recovery")
	if !ok {
		t.Fatal("recovery slot lost")
	}
	m2, err := OpenRecoverySlot(s, rk, got.VaultID)
	if err != nil || !bytes.Equal(m2.Bytes(), m.Bytes()) {
		t.Fatalf("recovery unwrap: %v", err)
	}
	m2.Wipe()
	b2, _ := got.Marshal(k)
	if !bytes.Equal(b, b2) {
		t.Error("parse then marshal does not reproduce the header")
	}
}

// One damaged byte anywhere in the file, whatever the damage, leaves a
// whole copy that the recovery key opens and the MAC authenticates, and the
// damage is noticed (the file is not Clean) so that it gets rewritten.
func TestHeaderEveryByteFlip(t *testing.T) {
	h, m, k, rk := testHeader(t)
	b, _ := h.Marshal(k)
	want, _ := json.Marshal(h)
	for i := range b {
		for _, x := range []byte{0x01, 0x20, 0xff} {
			b[i] ^= x
			f, err := ParseHeaderFile(b)
			if err != nil {
				t.Fatalf("byte %d ^ %#x: %v", i, x, err)
			}
			if f.Clean {
				t.Fatalf("byte %d ^ %#x: damage not noticed", i, x)
			}
			opened := 0
			for _, c := range f.Copies {
				if c.Header == nil {
					continue
				}
				rs, ok := c.Header.Slot("recovery")
				if !ok {
					continue
				}
				if m2, err := OpenRecoverySlot(rs, rk, c.Header.VaultID); err == nil && bytes.Equal(m2.Bytes(), m.Bytes()) && c.Verify(k) == nil {
					got, _ := json.Marshal(c.Header)
					if !bytes.Equal(got, want) {
						t.Fatalf("byte %d ^ %#x: an authentic copy reads differently", i, x)
					}
					opened++
					m2.Wipe()
				}
			}
			if opened == 0 {
				t.Fatalf("byte %d ^ %#x: the recovery key opens no copy", i, x)
			}
			b[i] ^= x
		}
	}
	if f, err := ParseHeaderFile(b); err != nil || !f.Clean || len(f.Copies) != 2 {
		t.Fatalf("untouched file: %+v, %v", f, err)
	}
	// Cut off at any point, the first copy survives as long as it is whole.
	half := len(b) / 2
	for n := half; n < len(b); n += 7 {
		if _, err := ParseHeader(b[:n]); err != nil {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
}

// A format 1 file (sealfs before issue 14: one copy, no checksum) still
// parses and verifies; the rules that came with format 2 do not apply.
func TestHeaderFormat1(t *testing.T) {
	h, _, k, _ := testHeader(t)
	body, _ := json.MarshalIndent(h, "", " ")
	v1 := encodeCopy(1, body, nil)
	v1 = append(v1, headerMAC(k, v1)...)
	f, err := ParseHeaderFile(v1)
	if err != nil || f.Version != 1 || len(f.Copies) != 1 || !f.Clean || f.First().Verify(k) != nil {
		t.Fatalf("format 1: %+v, %v", f, err)
	}
	if f.First().Header.Version != 1 {
		t.Errorf("format 1 header reads as version %d", f.First().Header.Version)
	}
	for _, bad := range []func(*Header){
		func(h *Header) { h.Slots[0].Rev = 2 },
		func(h *Header) { h.Removed = []RemovedSlot{{ID: "gone"}} },
	} {
		h2 := *h
		h2.Slots = slices.Clone(h.Slots)
		bad(&h2)
		body, _ := json.MarshalIndent(&h2, "", " ")
		v1 := encodeCopy(1, body, make([]byte, 32))
		if _, err := ParseHeaderFile(v1); !errors.Is(err, ErrHeaderFormat) {
			t.Errorf("format 1 with format 2 fields: %v", err)
		}
	}
	// A flipped byte in format 1 is refused: it has no second copy.
	v1[20] ^= 1
	if _, err := ParseHeaderFile(v1); err == nil {
		if VerifyHeader(k, v1) == nil {
			t.Error("a damaged format 1 header verifies")
		}
	}
}

// setVersion writes v into both copies' version fields.
func setVersion(b []byte, v uint16) {
	binary.BigEndian.PutUint16(b[8:], v)
	binary.BigEndian.PutUint16(b[len(b)/2+8:], v)
}

func TestHeaderNewerVersionAndFeature(t *testing.T) {
	h, _, k, _ := testHeader(t)
	b, _ := h.Marshal(k)
	setVersion(b, 7)
	_, err := ParseHeader(b)
	var nv *NewerVersionError
	if !errors.As(err, &nv) || !strings.Contains(err.Error(), "newer sealfs (format 7); upgrade sealfs") {
		t.Errorf("newer version: %v", err)
	}
	h.Features = []string{"quantum-names"}
	b, _ = h.Marshal(k)
	var uf *UnknownFeatureError
	if _, err := ParseHeader(b); !errors.As(err, &uf) {
		t.Errorf("unknown feature: %v", err)
	}
}

func TestHeaderRejectsBadSlots(t *testing.T) {
	h, _, k, _ := testHeader(t)
	// format.md §3: the bounds are tight; one step beyond any of them is
	// refused, the bounds themselves are accepted.
	for _, c := range []struct {
		t, m uint32
		p    uint8
		ok   bool
	}{
		{4, 128 << 10, 4, true}, {1, 32, 4, true}, {1, 8, 1, true},
		{5, 64 << 10, 4, false}, {3, 128<<10 + 1, 4, false}, {3, 64 << 10, 5, false},
		{0, 64 << 10, 4, false}, {3, 64 << 10, 0, false}, {64, 4 << 20, 64, false}, {3, 1 << 30, 4, false},
	} {
		h.Slots[1].KDF.Time, h.Slots[1].KDF.MemoryKiB, h.Slots[1].KDF.Threads = c.t, c.m, c.p
		b, _ := h.Marshal(k)
		_, err := ParseHeader(b)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrHeaderFormat)) {
			t.Errorf("KDF cost t=%d m=%d p=%d: %v", c.t, c.m, c.p, err)
		}
		if c.ok {
			continue
		}
		if _, err := DeriveAuthValue([]byte("pw"), h.Slots[1].KDF); err == nil {
			t.Errorf("DeriveAuthValue ran with out-of-range cost t=%d m=%d p=%d", c.t, c.m, c.p)
		}
	}
	h.Slots[1].KDF.Time, h.Slots[1].KDF.Threads = defaultTime, defaultThreads
	// format.md §3: memory_kib ≥ 8·threads, Argon2's own minimum.
	h.Slots[1].KDF.MemoryKiB = 8*uint32(h.Slots[1].KDF.Threads) - 1
	b, _ := h.Marshal(k)
	if _, err := ParseHeader(b); !errors.Is(err, ErrHeaderFormat) {
		t.Errorf("memory_kib below 8·threads accepted: %v", err)
	}
	h.Slots[1].KDF.MemoryKiB = 8 * uint32(h.Slots[1].KDF.Threads)
	b, _ = h.Marshal(k)
	if _, err := ParseHeader(b); err != nil {
		t.Errorf("memory_kib = 8·threads refused: %v", err)
	}
	h.Slots[1].KDF.MemoryKiB = defaultMemory
	// A PCR gate only on attempt-limited slots with PCRs, both halves.
	tb := h.Slots[1].TPM
	for _, c := range []struct {
		gate     [][]byte
		nv       uint32
		pcrs     []int
		accepted bool
	}{
		{[][]byte{{1}, {2}}, 0x01800001, []int{7}, true},
		{[][]byte{{1}, nil}, 0x01800001, []int{7}, false},
		{[][]byte{{1}, {2}}, 0, []int{7}, false},
		{[][]byte{{1}, {2}}, 0x01800001, nil, false},
	} {
		tb.GatePublic, tb.GatePrivate, tb.PCRs = c.gate[0], c.gate[1], c.pcrs
		tb.NVIndex, tb.NVName, tb.MaxTries = 0, nil, 0
		if c.nv != 0 {
			tb.NVIndex, tb.NVName, tb.MaxTries = c.nv, []byte{1}, 3
		}
		b, _ := h.Marshal(k)
		if _, err := ParseHeader(b); c.accepted != (err == nil) {
			t.Errorf("gate %v, nv %#x, pcrs %v: %v", c.gate, c.nv, c.pcrs, err)
		}
	}
	*tb = TPMBlob{Public: []byte{1}, Private: []byte{2}, SRKName: []byte{3}}
	h.Slots[1].ID = "recovery"
	b, _ = h.Marshal(k)
	if _, err := ParseHeader(b); !errors.Is(err, ErrHeaderFormat) {
		t.Errorf("duplicate slot id accepted: %v", err)
	}
}

func TestDeriveAuthValue(t *testing.T) {
	p, _ := NewKDFParams()
	p.MemoryKiB, p.Time = 1024, 1 // keep the test fast; cost is not under test
	a, err := DeriveAuthValue([]byte("correct horse"), p)
	if err != nil || len(a) != AuthValueSize || bytes.IndexByte(a, 0) >= 0 {
		t.Fatalf("auth value %q: %v", a, err)
	}
	b, _ := DeriveAuthValue([]byte("correct horse"), p)
	c, _ := DeriveAuthValue([]byte("correct horsf"), p)
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("auth value is not a function of the password")
	}
	if _, err := DeriveAuthValue(nil, p); err == nil {
		t.Error("empty password accepted")
	}
}

// v2File lays body out as a format 2 file (both copies), with a zero MAC.
func v2File(body []byte) []byte {
	return finishCopy(encodeCopy(2, body, make([]byte, 32)))
}

// format.md §3: decoders MUST reject trailing data after the JSON body,
// including a stray closing bracket (json.Decoder.More alone misses those).
func TestHeaderRejectsTrailingData(t *testing.T) {
	h, _, _, _ := testHeader(t)
	body, _ := json.MarshalIndent(h, "", " ")
	for _, tail := range []string{"}", "]", " }", "{}", "x", "\n}\n"} {
		nb := append(bytes.Clone(body), tail...)
		if _, err := ParseHeader(v2File(nb)); !errors.Is(err, ErrHeaderFormat) {
			t.Errorf("body with trailing %q: got %v, want ErrHeaderFormat", tail, err)
		}
	}
	if _, err := ParseHeader(v2File(body)); err != nil {
		t.Fatalf("untouched header: %v", err)
	}
}
