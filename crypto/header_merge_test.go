package crypto

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func cloneHeader(t *testing.T, h *Header) *Header {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var out Header
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	out.Version = h.Version
	return &out
}

func slotIDs(h *Header) []string {
	var ids []string
	for _, s := range h.Slots {
		ids = append(ids, s.ID)
	}
	return ids
}

// The scenario: device A changes its slot's password while device
// B replaces its own slot (recover), both offline. Whichever file the sync
// service keeps, the merge holds A's new slot, B's new slot, and not B's
// old one.
func TestMergeHeadersTwoDevices(t *testing.T) {
	h, _, _, _ := testHeader(t) // recovery, tpm-1
	h.Slots[1].ID = "tpm-a"
	kdf, _ := NewKDFParams()
	h.Slots = append(h.Slots, Slot{ID: "tpm-b", Type: SlotTPM, KDF: kdf, Created: time.Unix(1700000100, 0).UTC(),
		TPM: &TPMBlob{Public: []byte{4}, Private: []byte{5}, SRKName: []byte{6}}})

	a := cloneHeader(t, h) // A: passwd
	a.Slots[1].Rev++
	a.Slots[1].TPM.Private = []byte{9}
	b := cloneHeader(t, h) // B: recover
	b.RemoveSlot("tpm-b", time.Unix(1700000200, 0))
	b.Slots = append(b.Slots, Slot{ID: "tpm-b2", Type: SlotTPM, KDF: kdf, Created: time.Unix(1700000200, 0).UTC(),
		TPM: &TPMBlob{Public: []byte{7}, Private: []byte{8}, SRKName: []byte{6}}})

	ab, err := MergeHeaders(b, a)
	if err != nil {
		t.Fatal(err)
	}
	if got := slotIDs(ab); !slices.Equal(got, []string{"recovery", "tpm-a", "tpm-b2"}) {
		t.Fatalf("merged slots %v", got)
	}
	if s, _ := ab.Slot("tpm-a"); s.Rev != 1 || s.TPM.Private[0] != 9 {
		t.Errorf("A's new slot lost: %+v", s.TPM)
	}
	if len(ab.Removed) != 1 || ab.Removed[0].ID != "tpm-b" {
		t.Errorf("tombstones %v", ab.Removed)
	}
	ba, err := MergeHeaders(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := slotIDs(ba); !slices.Equal(got, []string{"recovery", "tpm-a", "tpm-b2"}) {
		t.Fatalf("merged the other way: %v", got)
	}
	// The old header (a third, stale copy) brings nothing back, and the
	// order of the other copies does not matter.
	x, _ := MergeHeaders(b, a, h)
	y, _ := MergeHeaders(b, h, a)
	jx, _ := json.Marshal(x)
	jy, _ := json.Marshal(y)
	jab, _ := json.Marshal(ab)
	if string(jx) != string(jy) || string(jx) != string(jab) {
		t.Errorf("merge depends on the order of the copies or on a stale one:\n%s\n%s", jx, jab)
	}
	other := cloneHeader(t, h)
	other.VaultID = make([]byte, 16)
	if _, err := MergeHeaders(h, other); err == nil {
		t.Error("merged headers of two vaults")
	}
}

func TestRemoveSlotKeepsNewestTombstones(t *testing.T) {
	h, _, _, _ := testHeader(t)
	base := time.Unix(1700000000, 0)
	for i := range maxRemoved + 10 {
		h.RemoveSlot("gone-"+time.Duration(i).String(), base.Add(time.Duration(i)*time.Second))
	}
	if len(h.Removed) != maxRemoved || !h.Removed[0].Removed.Equal(base.Add((maxRemoved+9)*time.Second)) {
		t.Fatalf("%d tombstones, newest %v", len(h.Removed), h.Removed[0].Removed)
	}
	if err := h.validate(); err != nil {
		t.Fatal(err)
	}
}
