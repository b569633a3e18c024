package vault

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// TestMain keeps the tests' slot pins out of the user's state directory,
// and makes new slots' KDF cheap: its cost is crypto's to test.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealfs-vault-state")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	newKDFParams = func() (*crypto.KDFParams, error) {
		p, err := crypto.NewKDFParams()
		if err == nil {
			p.Time, p.MemoryKiB = 1, 256
		}
		return p, err
	}
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

// editHeader rewrites the header in place, as someone who can write the
// cipher folder could (crypto.EditUnauthenticated: the MAC is kept, so the
// change shows only after an unlock).
func editHeader(t *testing.T, dir string, edit func(h *crypto.Header)) (restore func()) {
	t.Helper()
	raw := readHeader(t, dir)
	out, err := crypto.EditUnauthenticated(raw, edit)
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

// editSlots edits every TPM slot of the header.
func editSlots(t *testing.T, dir string, edit func(s *crypto.Slot)) (restore func()) {
	t.Helper()
	return editHeader(t, dir, func(h *crypto.Header) {
		for i := range h.Slots {
			if h.Slots[i].Type == crypto.SlotTPM {
				edit(&h.Slots[i])
			}
		}
	})
}

func flipSalt(s *crypto.Slot) { s.KDF.Salt[0] ^= 1 }

// wantNoTry checks that nothing reached the TPM's password check: no
// Unseal at all, and no limited slot lost a try.
func wantNoTry(t *testing.T, f *fakeTPM) {
	t.Helper()
	if f.unseals != 0 {
		t.Errorf("%d password tries reached the TPM, want none", f.unseals)
	}
	for i, nv := range f.nv {
		if nv.count != 0 {
			t.Errorf("limited slot %#x lost %d tries", i, nv.count)
		}
	}
}

// pinned makes a vault and unlocks it once, so this machine pins its slot.
func pinned(t *testing.T, f *fakeTPM, maxTries uint32) (dir, id string) {
	t.Helper()
	dir = t.TempDir()
	v, _, err := Create(dir, nil, f, []byte("pw"), CreateOptions{Seal: SealOptions{MaxTries: maxTries}})
	if err != nil {
		t.Fatal(err)
	}
	id = v.TPMSlots(nil)[0].ID
	v.Wipe()
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	f.calls, f.unseals = 0, 0
	return dir, id
}

// Every way of changing the header in the cipher folder that issue 14
// lists is refused before the password is derived and before any password
// reaches the TPM: no dictionary-attack strike, no try of a limited slot.
func TestPinsRefuseBypasses(t *testing.T) {
	freshState(t)
	for _, tc := range []struct {
		name     string
		maxTries uint32
		edit     func(h *crypto.Header, id string)
		want     any // the refusal's type
	}{
		{"salt", 0, func(h *crypto.Header, id string) { flipSalt(&h.Slots[1]) }, &SlotChangedError{}},
		{"salt of a limited slot", 3, func(h *crypto.Header, id string) { flipSalt(&h.Slots[1]) }, &SlotChangedError{}},
		{"kdf cost", 0, func(h *crypto.Header, id string) { h.Slots[1].KDF.Time++ }, &SlotChangedError{}},
		{"blob", 0, func(h *crypto.Header, id string) { h.Slots[1].TPM.Public = append(h.Slots[1].TPM.Public, 0) }, &SlotChangedError{}},
		{"renamed slot", 3, func(h *crypto.Header, id string) { h.Slots[1].ID = "tpm-renamed" }, &UnknownSlotError{}},
		{"renamed slot, new salt", 3, func(h *crypto.Header, id string) {
			h.Slots[1].ID = "tpm-renamed"
			flipSalt(&h.Slots[1])
		}, &UnknownSlotError{}},
		{"vault_id", 3, func(h *crypto.Header, id string) { h.VaultID[0] ^= 1 }, &VaultIDChangedError{}},
		{"vault_id and salt", 3, func(h *crypto.Header, id string) {
			h.VaultID[0] ^= 1
			flipSalt(&h.Slots[1])
		}, &VaultIDChangedError{}},
		{"nv index of a limited slot", 3, func(h *crypto.Header, id string) { h.Slots[1].TPM.NVIndex++ }, &SlotChangedError{}},
		{"nv name of a limited slot", 3, func(h *crypto.Header, id string) { h.Slots[1].TPM.NVName = []byte("other") }, &SlotChangedError{}},
		{"unpinned slot added, pinned one removed", 3, func(h *crypto.Header, id string) {
			s := h.Slots[1]
			s.ID = "tpm-added"
			s.KDF = &crypto.KDFParams{Alg: "argon2id", Salt: make([]byte, 16), Time: 1, MemoryKiB: 64, Threads: 1}
			h.Slots = []crypto.Slot{h.Slots[0], s}
		}, &UnknownSlotError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTPM("srk-a")
			dir, id := pinned(t, f, tc.maxTries)
			restore := editHeader(t, dir, func(h *crypto.Header) { tc.edit(h, id) })
			v := loadVault(t, dir)
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrPinRefused) || fmt.Sprintf("%T", err) != fmt.Sprintf("%T", tc.want) {
					t.Fatalf("%s: %v (%T), want %T", what, err, err, tc.want)
				}
				if !strings.Contains(err.Error(), "refusing to spend a password try") {
					t.Errorf("%s: message %q", what, err)
				}
			}
			check("CheckPins", v.CheckPins(""))
			if f.calls != 0 {
				t.Errorf("CheckPins made %d TPM calls", f.calls)
			}
			check("CheckPasswordSlots", v.CheckPasswordSlots(f, ""))
			check("UnlockPassword", v.UnlockPassword(f, []byte("pw")))
			if v.Unlocked() {
				t.Fatal("unlocked")
			}
			wantNoTry(t, f)
			restore()
			if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil {
				t.Fatalf("the restored header does not open: %v", err)
			}
		})
	}
}

// A slot whose SRK Name was changed is no slot of this TPM: never tried.
func TestPinsSRKNameChanged(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, _ := pinned(t, f, 3)
	editSlots(t, dir, func(s *crypto.Slot) { s.TPM.SRKName = []byte("srk-elsewhere") })
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); !errors.Is(err, ErrOtherMachine) {
		t.Fatalf("unlock: %v, want ErrOtherMachine", err)
	}
	wantNoTry(t, f)
}

// Unpinned slots for this TPM beside the pinned one are skipped, wherever
// the header puts them; the pinned one is tried and opens (the MAC then
// fails, since the header was changed, but no try was spent).
func TestPinsSkipUnpinnedAmongPinned(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, id := pinned(t, f, 3)
	editHeader(t, dir, func(h *crypto.Header) {
		evil := h.Slots[1]
		evil.ID = "tpm-evil"
		evil.KDF = &crypto.KDFParams{Alg: "argon2id", Salt: make([]byte, 16), Time: 1, MemoryKiB: 64, Threads: 1}
		h.Slots = []crypto.Slot{evil, h.Slots[1], h.Slots[0]} // first, and reordered
	})
	v := loadVault(t, dir)
	if err := v.CheckPins(""); err != nil {
		t.Fatalf("CheckPins with the pinned slot still there: %v", err)
	}
	err := v.UnlockPassword(f, []byte("pw"))
	if err == nil || !strings.Contains(err.Error(), "vault header was modified") {
		t.Fatalf("unlock: %v, want the pinned slot to open and the MAC to fail", err)
	}
	if f.unseals != 1 {
		t.Errorf("%d tries, want only the pinned slot's", f.unseals)
	}
	wantNoTry := func() {
		for _, nv := range f.nv {
			if nv.count != 0 {
				t.Errorf("a try was spent")
			}
		}
	}
	wantNoTry()
	var ue *UnknownSlotError
	if err := v.UnlockPasswordSlot(f, []byte("pw"), "tpm-evil"); !errors.As(err, &ue) {
		t.Fatalf("--slot tpm-evil: %v", err)
	}
	if err := v.CheckPins(id); err != nil {
		t.Fatalf("CheckPins(%s): %v", id, err)
	}
}

// Reordering the slots cannot make a password go to the wrong slot: two
// pinned slots of this TPM are tried in the order this machine pinned
// them, whatever the header's order.
func TestPinsOrderIsLocal(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, first := pinned(t, f, 3)
	v := loadVault(t, dir)
	if err := v.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	second, err := v.AddTPMSlot(f, []byte("pw2"), SealOptions{MaxTries: 3}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	v.Wipe()
	if err := loadVault(t, dir).UnlockPasswordSlot(f, []byte("pw2"), second.ID); err != nil {
		t.Fatal(err)
	}
	h, _ := crypto.ParseHeader(readHeader(t, dir))
	if h.Slots[1].ID != first {
		t.Fatalf("set-up: slots %v", h.Slots)
	}
	editHeader(t, dir, func(h *crypto.Header) { slices.Reverse(h.Slots) })
	f.calls, f.unseals = 0, 0
	err = loadVault(t, dir).UnlockPassword(f, []byte("pw"))
	if err == nil || !strings.Contains(err.Error(), "vault header was modified") || f.unseals != 1 {
		t.Fatalf("unlock after reordering: %v, %d tries; want the first pinned slot tried first", err, f.unseals)
	}
	spent := 0
	for _, nv := range f.nv {
		spent += int(nv.count)
	}
	if spent != 0 {
		t.Errorf("reordering cost %d tries", spent)
	}
}

// Trust on first use, per cipher directory: a path this machine has no
// record of tries the slot (a changed salt then costs a try), and pins it
// after a successful unlock; the same vault at another path starts over.
func TestPinsFirstUse(t *testing.T) {
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
	// The record is keyed by the path: the same bytes elsewhere are a
	// first use there.
	other := filepath.Join(t.TempDir(), "copy")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, crypto.HeaderFileName), readHeader(t, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadVault(t, other).UnlockPassword(f, []byte("pw")); !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("another path: %v, want a first use", err)
	}
}

// A record of sealfs before issue 14 (trust-<vault_id>.json) still refuses
// the slots it pinned on the first unlock at a path without a new record.
func TestPinsLegacyRecord(t *testing.T) {
	store := freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	if err := os.Remove(filepath.Join(store, pinFileName)); err != nil {
		t.Fatal(err)
	}
	v := loadVault(t, dir)
	slot := v.TPMSlots(nil)[0]
	old, _ := json.Marshal(legacyRecord{VaultID: hex.EncodeToString(v.Header.VaultID),
		Slots: map[string][]string{slot.ID: {legacyDigest(slot)}}})
	legacy := filepath.Join(store, "trust-"+hex.EncodeToString(v.Header.VaultID)+".json")
	if err := os.WriteFile(legacy, old, 0o600); err != nil {
		t.Fatal(err)
	}
	restore := editSlots(t, dir, flipSalt)
	var ce *SlotChangedError
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); !errors.As(err, &ce) {
		t.Fatalf("legacy-pinned slot changed: %v", err)
	}
	wantNoTry(t, f)
	restore()
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(store, pinFileName)); err != nil {
		t.Fatalf("the unlock did not write the new record: %v", err)
	}
}

// The pin follows sealfs' own changes to the slot (passwd, recover), and
// an old copy of the header from before them is refused like any change.
func TestPinsFollowOwnChanges(t *testing.T) {
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
	f.unseals = 0
	var ce *SlotChangedError
	if err := loadVault(t, dir).UnlockPassword(f, []byte("one")); !errors.As(err, &ce) {
		t.Fatalf("old header copy: %v", err)
	}
	wantNoTry(t, f)
	// ... and `sealfs recover` makes a fresh slot that is pinned at once;
	// the replaced one is forgotten: its old copies are refused too.
	v := loadVault(t, dir)
	if err := v.UnlockRecovery(rk); err != nil {
		t.Fatal(err)
	}
	afterPasswd := readHeader(t, dir)
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
	if err := os.WriteFile(path, afterPasswd, 0o600); err != nil {
		t.Fatal(err)
	}
	var ue *UnknownSlotError
	if err := loadVault(t, dir).UnlockPassword(f, []byte("three")); !errors.As(err, &ue) {
		t.Fatalf("header from before recover: %v, want the replaced slot refused", err)
	}
}

// The record is private, replaced atomically, holds nothing derived from
// the password, and a damaged one refuses (naming the file) rather than
// trusting the header.
func TestPinsRecordFile(t *testing.T) {
	store := freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "hunter2")
	v := loadVault(t, dir)
	slot := v.TPMSlots(nil)[0]
	path := filepath.Join(store, pinFileName)
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
	abs, _ := filepath.Abs(dir)
	for _, want := range []string{slot.ID, abs, hex.EncodeToString(f.srk)} {
		if !strings.Contains(string(b), want) {
			t.Errorf("record lacks %s:\n%s", want, b)
		}
	}
	if ents, _ := os.ReadDir(store); len(ents) != 1 {
		t.Errorf("state directory holds %v, want only the record", ents)
	}

	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.calls = 0
	err = loadVault(t, dir).UnlockPassword(f, []byte("hunter2"))
	if err == nil || !strings.Contains(err.Error(), path) || f.unseals != 0 {
		t.Fatalf("damaged record: %v (%d tries)", err, f.unseals)
	}
	os.Remove(path)
	if err := loadVault(t, dir).UnlockPassword(f, []byte("hunter2")); err != nil {
		t.Fatalf("after removing the record: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("an unlock did not pin the slot again: %v", err)
	}
}

// sealfs' own change to a slot is pinned before the header is saved and
// narrowed after: a crash in between (either side of the save) leaves a pin
// that accepts both the old and the new header; after the save only the
// new one is accepted.
func TestPinsAcrossSave(t *testing.T) {
	freshState(t)
	f := newFakeTPM("srk-a")
	dir, _, _ := newVault(t, f, "pw")
	v := loadVault(t, dir)
	if err := v.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	defer v.Wipe()
	old := *v.TPMSlots(nil)[0]
	changed := old
	kdf := *old.KDF
	kdf.Salt = bytes.Clone(kdf.Salt)
	kdf.Salt[0] ^= 1
	changed.KDF = &kdf
	accepted := func(s *crypto.Slot) bool {
		rec, err := v.pinRecord(f.srk)
		return err == nil && rec != nil && rec.pin(s) != nil
	}
	if err := v.pinBeforeSave(&changed); err != nil {
		t.Fatal(err)
	}
	if !accepted(&old) || !accepted(&changed) {
		t.Fatal("between pin and save, both states must be accepted")
	}
	v.pinAfterSave(&changed)
	if accepted(&old) || !accepted(&changed) {
		t.Fatal("after save, only the new state must be accepted")
	}
}

func FuzzDecodePinFile(f *testing.F) {
	f.Add([]byte(`{"version":2,"vaults":[{"dir":"/v","srk_name":"00","vault_id":"01","slots":[{"id":"t","digest":"d","used":"2026-01-01T00:00:00Z"}]}]}`))
	f.Add([]byte(`{"version":2,"vaults":[{"dir":"v"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var pf pinFile
		if decodePinFile(b, &pf) != nil {
			return
		}
		for _, r := range pf.Vaults {
			if !filepath.IsAbs(r.Dir) {
				t.Fatalf("accepted a relative path %q", r.Dir)
			}
		}
	})
}

func FuzzConflictCopyName(f *testing.F) {
	for _, s := range []string{"sealfs.sync-conflict-20261202-130124-ABCDEFG.vault", "sealfs (conflicted copy 2026-12-02).vault",
		"sealfs.vault", "sealfs.vault.tmp-1", ".syncthing.sealfs.vault.tmp", "sealfs (1).vault"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !IsConflictCopyName(name) {
			return
		}
		if !strings.HasPrefix(name, "sealfs") || !strings.HasSuffix(name, ".vault") || name == crypto.HeaderFileName ||
			strings.ContainsRune(name, '/') || strings.Contains(name, ".tmp") {
			t.Fatalf("%q taken for a conflict copy", name)
		}
	})
}

// A pinned slot that was changed or is missing, beside another pinned slot
// of this TPM: the password is not tried on the other one (it may belong to
// the changed one) unless the user names it; once a named unlock shows the
// slot was removed for real (the authenticated header lacks it), its pin is
// dropped and unnamed unlocks work again.
func TestPinsChangedSlotBesideOthers(t *testing.T) {
	state := freshState(t)
	f := newFakeTPM("srk-a")
	dir, first := pinned(t, f, 3)
	v := loadVault(t, dir)
	if err := v.UnlockPassword(f, []byte("pw")); err != nil {
		t.Fatal(err)
	}
	second, err := v.AddTPMSlot(f, []byte("pw2"), SealOptions{MaxTries: 3}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	secondID := second.ID
	v.Wipe()
	restore := editSlots(t, dir, func(s *crypto.Slot) {
		if s.ID == first {
			flipSalt(s)
		}
	})
	f.unseals = 0
	var ce *SlotChangedError
	err = loadVault(t, dir).UnlockPassword(f, []byte("pw2"))
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "--slot "+secondID) {
		t.Fatalf("changed slot beside another: %v", err)
	}
	wantNoTry(t, f)
	restore()

	// Another device revokes the first slot (its own state, so this
	// machine's pins are untouched).
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	v = loadVault(t, dir)
	if err := v.UnlockPasswordSlot(f, []byte("pw2"), secondID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.RemoveSlot(first, false); err != nil {
		t.Fatal(err)
	}
	v.Wipe()
	t.Setenv("XDG_STATE_HOME", filepath.Dir(state))
	var me *SlotMissingError
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw2")); !errors.As(err, &me) || me.SlotID != first {
		t.Fatalf("pinned slot revoked elsewhere: %v", err)
	}
	if err := loadVault(t, dir).UnlockPasswordSlot(f, []byte("pw2"), secondID); err != nil {
		t.Fatalf("--slot %s: %v", secondID, err)
	}
	if err := loadVault(t, dir).UnlockPassword(f, []byte("pw2")); err != nil {
		t.Fatalf("after the named unlock dropped the revoked slot's pin: %v", err)
	}
}
