package vault

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// TestMain keeps the tests' slot pins out of the user's state directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealfs-vault-state")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freshState gives the test a state directory of its own: a machine that
// has pinned nothing yet.
func freshState(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_STATE_HOME", dir)
	return filepath.Join(dir, "sealfs")
}

// editSlots rewrites the header's body in place, as someone who can write
// the cipher folder could. The MAC is kept (it cannot be recomputed without
// the key), so the change shows only after an unlock.
func editSlots(t *testing.T, dir string, edit func(s *crypto.Slot)) (restore func()) {
	t.Helper()
	raw := readHeader(t, dir)
	out, err := crypto.EditUnauthenticated(raw, func(h *crypto.Header) {
		for i := range h.Slots {
			if h.Slots[i].Type == crypto.SlotTPM {
				edit(&h.Slots[i])
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, crypto.HeaderFileName)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func flipSalt(s *crypto.Slot) { s.KDF.Salt[0] ^= 1 }

// A pinned slot whose salt, blob or SRK Name changed in the cipher folder
// is refused before the password is derived and before any TPM call: no
// dictionary-attack strike, no try of a limited slot.
func TestTrustRefusesChangedSlot(t *testing.T) {
	freshState(t)
	for _, tc := range []struct {
		name     string
		maxTries uint32
		edit     func(*crypto.Slot)
	}{
		{"salt", 0, flipSalt},
		{"salt of a limited slot", 3, flipSalt},
		{"kdf cost", 0, func(s *crypto.Slot) { s.KDF.Time++ }},
		{"blob", 0, func(s *crypto.Slot) { s.TPM.Public = append(s.TPM.Public, 0) }},
		{"srk name", 0, func(s *crypto.Slot) { s.TPM.SRKName = []byte("srk-elsewhere") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTPM("srk-a")
			dir := t.TempDir()
			v, _, err := Create(dir, nil, f, []byte("pw"), CreateOptions{Seal: SealOptions{MaxTries: tc.maxTries}})
			if err != nil {
				t.Fatal(err)
			}
			id := v.TPMSlots(nil)[0].ID
			v.Wipe()
			restore := editSlots(t, dir, tc.edit)
			f.calls = 0
			v = loadVault(t, dir)
			var ce *SlotChangedError
			if err := v.CheckPins(""); !errors.As(err, &ce) {
				t.Fatalf("CheckPins: %v, want the slot refused", err)
			}
			if err := v.CheckPasswordSlots(f, ""); !errors.As(err, &ce) {
				t.Fatalf("CheckPasswordSlots: %v, want the slot refused", err)
			}
			err = v.UnlockPassword(f, []byte("pw"))
			if !errors.As(err, &ce) || ce.SlotID != id || v.Unlocked() {
				t.Fatalf("unlock of a changed slot: %v", err)
			}
			want := "this vault's TPM slot " + id + " was changed outside sealfs since it was last used on this machine " +
				"(its key-derivation parameters or sealed blob differ); refusing to spend a password try on it. " +
				"If you changed it on another machine, run `sealfs recover` with your recovery key"
			if err.Error() != want {
				t.Errorf("message:\n%s\nwant:\n%s", err, want)
			}
			if f.calls != 0 {
				t.Errorf("%d TPM calls for a refused slot, want none", f.calls)
			}
			for _, nv := range f.nv {
				if nv.count != 0 {
					t.Errorf("a limited slot lost %d tries", nv.count)
				}
			}
			restore()
			if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil {
				t.Fatalf("the restored header does not open: %v", err)
			}
		})
	}
}

// Trust on first use: a machine without a pin for the slot tries it (and
// a changed salt costs a try, as before), and pins it after a successful
// unlock; from then on a change is refused.
func TestTrustOnFirstUse(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	restore := editSlots(t, dir, flipSalt)

	store := freshState(t) // another machine's, or this one's state lost
	err := loadVault(t, dir).UnlockPassword(f, []byte("pw"))
	if !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("unpinned changed slot: %v, want it tried (and failing)", err)
	}
	if ents, _ := os.ReadDir(store); len(ents) != 0 {
		t.Fatalf("a failed unlock pinned something: %v", ents)
	}
	restore()
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	editSlots(t, dir, flipSalt)
	var ce *SlotChangedError
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); !errors.As(err, &ce) {
		t.Fatalf("after the first unlock pinned it, a change: %v", err)
	}
}

// The pin follows sealfs' own changes to the slot (passwd, recover), and
// an old copy of the header from before them is refused like any change.
func TestTrustFollowsOwnChanges(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, rk, _ := newVault(t, f, "one")
	before := readHeader(t, dir)
	if err := loadVault(t, dir).ChangePassword(f, []byte("one"), []byte("two"), PasswdOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := loadVault(t, dir).UnlockPassword(f, []byte("two")); err != nil {
		t.Fatalf("after passwd: %v", err)
	}
	// Becoming attempt-limited re-seals: a new blob, pinned as well.
	if err := loadVault(t, dir).ChangePassword(f, []byte("two"), []byte("three"), PasswdOptions{MaxTries: ptr(3)}); err != nil {
		t.Fatal(err)
	}
	if err := loadVault(t, dir).UnlockPassword(f, []byte("three")); err != nil {
		t.Fatalf("after passwd --max-tries: %v", err)
	}

	// A rolled-back header (valid MAC, old slot) is refused on this machine...
	path := filepath.Join(dir, crypto.HeaderFileName)
	if err := os.WriteFile(path, before, 0o600); err != nil {
		t.Fatal(err)
	}
	var ce *SlotChangedError
	if err := loadVault(t, dir).UnlockPassword(f, []byte("one")); !errors.As(err, &ce) {
		t.Fatalf("old header copy: %v", err)
	}
	// ... and `sealfs recover` makes a fresh slot that is pinned at once.
	v := loadVault(t, dir)
	if err := v.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddTPMSlot(f, []byte("four"), SealOptions{}, "", true); err != nil {
		t.Fatal(err)
	}
	v.Wipe()
	if err := loadVault(t, dir).UnlockPassword(f, []byte("four")); err != nil {
		t.Fatalf("after recover: %v", err)
	}
	editSlots(t, dir, flipSalt)
	if err := loadVault(t, dir).UnlockPassword(f, []byte("four")); !errors.As(err, &ce) {
		t.Fatalf("recovered slot, then changed: %v", err)
	}
}

// The record is private, replaced atomically, holds nothing derived from
// the password, and a damaged one refuses (naming the file) rather than
// trusting the header.
func TestTrustRecordFile(t *testing.T) {
	store := freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "hunter2")
	v := loadVault(t, dir)
	slot := v.TPMSlots(nil)[0]
	path := filepath.Join(store, "trust-"+hex.EncodeToString(v.Header.VaultID)+".json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("Create pinned nothing: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(store); di.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", di.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	auth, err := crypto.DeriveAuthValue([]byte("hunter2"), slot.KDF)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{[]byte("hunter2"), auth, []byte(hex.EncodeToString(auth))} {
		if bytes.Contains(b, secret) {
			t.Fatalf("the record holds something derived from the password:\n%s", b)
		}
	}
	if !strings.Contains(string(b), slot.ID) {
		t.Errorf("record lacks slot %s:\n%s", slot.ID, b)
	}
	if ents, _ := os.ReadDir(store); len(ents) != 1 {
		t.Errorf("state directory holds %v, want only the record", ents)
	}

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.calls = 0
	err = loadVault(t, dir).UnlockPassword(f, []byte("hunter2"))
	if err == nil || !strings.Contains(err.Error(), path) || f.calls != 0 {
		t.Fatalf("damaged record: %v (%d TPM calls)", err, f.calls)
	}
	os.Remove(path)
	if err := loadVault(t, dir).UnlockPassword(f, []byte("hunter2")); err != nil {
		t.Fatalf("after removing the record: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("an unlock did not pin the slot again: %v", err)
	}
}

// With several slots for this TPM, a changed one is skipped and the others
// still open; only if none is left is the change the answer.
func TestTrustSkipsChangedSlotAmongOthers(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	v := loadVault(t, dir)
	if err := v.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.AddTPMSlot(f, []byte("pw"), SealOptions{}, "", false); err != nil {
		t.Fatal(err)
	}
	first := v.TPMSlots(nil)[0].ID
	v.Wipe()
	editSlots(t, dir, func(s *crypto.Slot) {
		if s.ID == first {
			flipSalt(s)
		}
	})
	// The header MAC then fails, but only after the unchanged slot opened:
	// the changed one was never tried.
	v = loadVault(t, dir)
	f.calls = 0
	if err := v.UnlockPassword(f, []byte("pw")); err == nil || !strings.Contains(err.Error(), "vault header was modified") {
		t.Fatalf("unlock: %v, want the second slot tried and the MAC to fail", err)
	}
	if f.calls != 2 { // SRKName, then one Unseal of the second slot
		t.Errorf("%d TPM calls, want 2", f.calls)
	}
	var ce *SlotChangedError
	if err := v.UnlockPasswordSlot(f, []byte("pw"), first); !errors.As(err, &ce) {
		t.Fatalf("--slot %s: %v", first, err)
	}
	if err := v.CheckPins(""); err != nil {
		t.Fatalf("CheckPins with an unchanged slot left: %v", err)
	}
	if err := v.CheckPins(first); !errors.As(err, &ce) {
		t.Fatalf("CheckPins(%s): %v", first, err)
	}
}

// sealfs' own change to a slot is pinned before the header is saved and
// narrowed after: a crash in between (either side of the save) leaves a pin
// that accepts both the old and the new header; after the save only the
// new one is accepted.
func TestTrustPinAcrossSave(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	v := loadVault(t, dir)
	if err := v.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	defer v.Wipe()
	old := v.TPMSlots(nil)[0]
	changed := *old
	kdf := *old.KDF
	kdf.Salt = bytes.Clone(kdf.Salt)
	kdf.Salt[0] ^= 1
	changed.KDF = &kdf

	if err := v.pinBeforeSave(&changed); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*crypto.Slot{old, &changed} {
		if err := v.checkTrust(s); err != nil {
			t.Fatalf("between pin and save: %v", err)
		}
	}
	v.pinAfterSave(&changed)
	if err := v.checkTrust(&changed); err != nil {
		t.Fatalf("after save, the new slot: %v", err)
	}
	var ce *SlotChangedError
	if err := v.checkTrust(old); !errors.As(err, &ce) {
		t.Fatalf("after save, the old slot: %v, want it refused", err)
	}
}
