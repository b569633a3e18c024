package tests

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// changedSlotMsg is how sealfs refuses a TPM slot that differs from this
// machine's record of it.
const changedSlotMsg = "was changed outside sealfs since it was last used on this machine " +
	"(its key-derivation parameters or sealed blob differ); refusing to spend a password try on it. " +
	"If you changed it on another machine, run `sealfs recover` with your recovery key"

// flipSlotSalt changes the TPM slot's KDF salt in the cipher folder, as
// anyone who can write it could: the header MAC (checked only after an
// unlock) is kept. It returns the original header bytes.
func (e *cliEnv) flipSlotSalt() []byte {
	e.t.Helper()
	return e.editHeader(func(h *crypto.Header) {
		for i := range h.Slots {
			if h.Slots[i].Type == crypto.SlotTPM {
				h.Slots[i].KDF.Salt[0] ^= 1
			}
		}
	})
}

// editHeader changes the header in the cipher folder the way an attacker
// can (crypto.EditUnauthenticated) and returns the original bytes.
func (e *cliEnv) editHeader(edit func(h *crypto.Header)) []byte {
	e.t.Helper()
	raw := e.vaultBytes()
	out, err := crypto.EditUnauthenticated(raw, edit)
	if err != nil {
		e.t.Fatal(err)
	}
	e.writeVault(out)
	return raw
}

func (e *cliEnv) writeVault(b []byte) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.cipher, crypto.HeaderFileName), b, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestCLISlotChangedRefused: a TPM slot changed in the cipher folder since
// this machine last used it is refused before the password is tried, so
// the right password costs no dictionary-attack strike; a machine with no
// record of the slot (trust on first use) still spends one.
func TestCLISlotChangedRefused(t *testing.T) {
	e := newCLIEnv(t, daParams{maxTries: 5, interval: 900 * time.Second, recovery: 900 * time.Second})
	pw := e.secretFile("pw", "pinned-slot-pw")
	e.initVault(pw, "--max-tries", "0")
	orig := e.flipSlotSalt()

	wantExit(t, e.run("mount", "--password-file", pw, e.cipher, e.mnt), 1, changedSlotMsg)
	// Refused before the TPM is even opened: one that is not there.
	wantExit(t, e.runWith("unix:"+filepath.Join(e.base, "no-tpm"), nil, "fsck", "--password-file", pw, e.cipher), 8, changedSlotMsg)
	wantExit(t, e.runWith("unix:"+filepath.Join(e.base, "no-tpm"), nil, "passwd", "--password-file", pw, "--new-password-file", pw, e.cipher), 1, changedSlotMsg)
	wantExit(t, e.run("fsck", "--password-file", pw, e.cipher), 8, changedSlotMsg)
	wantExit(t, e.run("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher), 1, changedSlotMsg)
	if s := e.status(); s.TPM.LockoutCounter != 0 {
		t.Fatalf("lockout counter %d after refusals, want 0: a try was spent", s.TPM.LockoutCounter)
	}

	// Another machine's state (or this one's, lost): first use, no record,
	// and the changed salt makes the right password a wrong one.
	fresh := []string{"XDG_STATE_HOME=" + filepath.Join(e.base, "other-state")}
	wantExit(t, e.runWith(e.tpm.spec, fresh, "fsck", "--password-file", pw, e.cipher), 8, "wrong password (4 tries left")
	if s := e.status(); s.TPM.LockoutCounter != 1 {
		t.Fatalf("lockout counter %d after an unpinned try, want 1", s.TPM.LockoutCounter)
	}

	e.writeVault(orig)
	e.mustRun("fsck", "--password-file", pw, e.cipher)
}

// TestCLISlotChangedLimitedAndRecover: the same for an attempt-limited
// slot, whose tries stay untouched; and a header rolled back to before a
// `passwd` (its MAC valid, its slot not the one this machine pinned) is
// refused too, until `sealfs recover` makes a fresh, pinned slot.
func TestCLISlotChangedLimitedAndRecover(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "limited-pinned-pw")
	rk := e.initVault(pw, "--max-tries", "3")
	orig := e.flipSlotSalt()
	wantExit(t, e.run("mount", "--password-file", pw, e.cipher, e.mnt), 1, changedSlotMsg)
	e.wantTries(3, 3)
	e.writeVault(orig)

	pw2 := e.secretFile("pw2", "limited-pinned-pw-2")
	e.mustRun("passwd", "--password-file", pw, "--new-password-file", pw2, e.cipher)
	e.mustRun("fsck", "--password-file", pw2, e.cipher)
	e.writeVault(orig) // e.g. an old copy restored from the sync service
	wantExit(t, e.run("fsck", "--password-file", pw, e.cipher), 8, changedSlotMsg)

	rkFile := e.secretFile("rk", rk)
	pw3 := e.secretFile("pw3", "after-recover-pw")
	e.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", pw3, e.cipher)
	e.mustRun("fsck", "--password-file", pw3, e.cipher)
	e.flipSlotSalt()
	wantExit(t, e.run("fsck", "--password-file", pw3, e.cipher), 8, changedSlotMsg)
}

// TestCLIPinBypasses: every edit of the header that issue 14 found to cost
// the owner tries is refused before any password reaches the TPM, on a
// machine that has used the vault; the TPM's own counters (PIN-fail
// indices, DA counter) prove it. Reordering the slots costs nothing either.
func TestCLIPinBypasses(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "pinned-pw-1")
	pw2 := e.secretFile("pw2", "pinned-pw-2")
	rk := e.initVault(pw)
	rkFile := e.secretFile("rk", rk)
	beforePasswd := e.vaultBytes()
	e.mustRun("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher)
	e.mustRun("enroll", "--recovery-key-file", rkFile, "--password-file", pw2, e.cipher)
	orig := e.vaultBytes()
	h, err := crypto.ParseHeader(orig)
	if err != nil {
		t.Fatal(err)
	}
	first, second := h.Slots[1], h.Slots[2]
	old, err := crypto.ParseHeader(beforePasswd)
	if err != nil {
		t.Fatal(err)
	}
	oldSlot := old.Slots[1] // the first slot as it was before passwd
	slot := func(h *crypto.Header, id string) *crypto.Slot {
		s, ok := h.Slot(id)
		if !ok {
			t.Fatalf("no slot %s", id)
		}
		return s
	}
	salt := func(s *crypto.Slot) { s.KDF.Salt[0] ^= 1 }
	for _, tc := range []struct {
		name string
		edit func(h *crypto.Header)
		want string // refusal; "" for an unlock that tries only the pinned slot
	}{
		{"renamed slot with a new salt", func(h *crypto.Header) {
			s := slot(h, first.ID)
			s.ID = "tpm-renamed"
			salt(s)
		}, "is missing from the vault header"},
		{"vault_id changed, salt too", func(h *crypto.Header) {
			h.VaultID[0] ^= 1
			salt(slot(h, first.ID))
		}, "has another vault ID than the one this machine used there"},
		{"slot pointed at the other slot's NV index", func(h *crypto.Header) {
			s := slot(h, first.ID)
			s.TPM.NVIndex, s.TPM.NVName = second.TPM.NVIndex, second.TPM.NVName
		}, "was changed outside sealfs"},
		{"an old state of the slot under a new id", func(h *crypto.Header) {
			s := oldSlot
			s.ID = "tpm-old"
			h.Slots = []crypto.Slot{s, h.Slots[0]}
		}, "is not one this machine made or unlocked"},
		{"unpinned slot added first, slots reordered", func(h *crypto.Header) {
			s := *slot(h, first.ID)
			s.ID = "tpm-added"
			s.KDF = &crypto.KDFParams{Alg: "argon2id", Salt: make([]byte, 16), Time: 1, MemoryKiB: 64, Threads: 1}
			h.Slots = []crypto.Slot{s, h.Slots[2], h.Slots[1], h.Slots[0]}
		}, ""},
	} {
		e.editHeader(tc.edit)
		r := e.run("mount", "--password-file", pw, e.cipher, e.mnt)
		if tc.want != "" {
			wantExit(t, r, 1, tc.want)
			wantExit(t, r, 1, "refusing to spend a password try")
		} else {
			// The pinned slot alone is tried: the right password opens it,
			// and only then does the header MAC say it was changed.
			wantExit(t, r, 1, "vault header was modified")
		}
		e.writeVault(orig)
		e.wantUntouched()
		if t.Failed() {
			t.Fatalf("%s: a try was spent", tc.name)
		}
	}
	e.mustRun("fsck", "-q", "--password-file", pw, e.cipher)
	e.mustRun("fsck", "-q", "--slot", second.ID, "--password-file", pw2, e.cipher)
	e.wantUntouched()
}
