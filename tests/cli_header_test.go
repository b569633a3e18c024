package tests

// The vault header against the sync service (issue 14): two devices that
// change their slots offline both keep their password once the sync
// settles; one damaged byte anywhere in sealfs.vault never locks anyone
// out, and the unlock repairs it; a format 1 vault keeps opening and moves
// to format 2 at its first header change.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

const conflictName = "sealfs.sync-conflict-20261202-130124-ABCDEFG.vault"

// syncHeader is the sync service settling on header kept in every dir,
// and renaming lost to a conflict copy beside it.
func syncHeader(t *testing.T, kept, lost []byte, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, crypto.HeaderFileName), kept, 0o600); err != nil {
			t.Fatal(err)
		}
		if lost != nil {
			if err := os.WriteFile(filepath.Join(d, conflictName), lost, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// wantUntouched checks, with the TPM, that this env's slots of its TPM
// have all their tries and the DA counter is 0.
func (e *cliEnv) wantUntouched() {
	e.t.Helper()
	s := e.limitStatus()
	if s.TPM == nil || s.TPM.LockoutCounter != 0 {
		e.t.Errorf("DA counter: %+v", s.TPM)
	}
	for _, sl := range s.Slots {
		if sl.ThisTPM != nil && *sl.ThisTPM && sl.MaxTries > 0 && (sl.TriesLeft == nil || *sl.TriesLeft != int(sl.MaxTries)) {
			e.t.Errorf("slot %s: %v of %d tries left (%s)", sl.ID, sl.TriesLeft, sl.MaxTries, sl.TPMError)
		}
	}
}

func TestCLITwoDevicesOfflineSlotChanges(t *testing.T) {
	requireFUSE(t)
	for _, keepB := range []bool{true, false} {
		t.Run(map[bool]string{true: "sync keeps B's header", false: "sync keeps A's header"}[keepB], func(t *testing.T) {
			a := newCLIEnv(t, defaultDA)
			b := newCLIEnv(t, defaultDA)
			pwA1, pwA2 := a.secretFile("pwA1", "device-a-first"), a.secretFile("pwA2", "device-a-second")
			pwB1, pwB2 := b.secretFile("pwB1", "device-b-first"), b.secretFile("pwB2", "device-b-second")
			rk := a.initVault(pwA1)
			a.mustRun("mount", "--password-file", pwA1, a.cipher, a.mnt)
			mustWrite(t, filepath.Join(a.mnt, "doc.txt"), []byte("both devices read this"))
			a.mustRun("unmount", a.mnt)
			copyDir(t, a.cipher, b.cipher)
			b.secrets = append(b.secrets, rk)
			b.mustRun("enroll", "--recovery-key-file", b.secretFile("rk", rk), "--password-file", pwB1, b.cipher)
			syncHeader(t, b.vaultBytes(), nil, a.cipher)
			a.mustRun("fsck", "-q", "--password-file", pwA1, a.cipher)

			// Offline: A changes its password, B recovers (a new slot in
			// place of its old one).
			a.mustRun("passwd", "--password-file", pwA1, "--new-password-file", pwA2, a.cipher)
			b.mustRun("recover", "--recovery-key-file", b.secretFile("rk2", rk), "--password-file", pwB2, b.cipher)
			hA, hB := a.vaultBytes(), b.vaultBytes()
			if keepB {
				syncHeader(t, hB, hA, a.cipher, b.cipher)
			} else {
				syncHeader(t, hA, hB, a.cipher, b.cipher)
			}
			if st := a.mustRun("status", a.cipher).stdout; !strings.Contains(st, "header: sync conflict copy "+conflictName) {
				t.Errorf("status does not show the conflict copy:\n%s", st)
			}

			// Each device mounts with its own new password, no try spent.
			for _, d := range []struct {
				e  *cliEnv
				pw string
			}{{a, pwA2}, {b, pwB2}} {
				r := d.e.mustRun("mount", "--password-file", d.pw, d.e.cipher, d.e.mnt)
				if !strings.Contains(r.stderr, "note: vault header repaired: merged the sync conflict copy "+conflictName) {
					t.Errorf("mount did not merge the conflict copy:\n%s", r.stderr)
				}
				if got := string(mustRead(t, filepath.Join(d.e.mnt, "doc.txt"))); got != "both devices read this" {
					t.Errorf("file reads %q", got)
				}
				d.e.mustRun("unmount", d.e.mnt)
				if _, err := os.Stat(filepath.Join(d.e.cipher, conflictName)); !os.IsNotExist(err) {
					t.Errorf("the merged conflict copy is still there: %v", err)
				}
				d.e.wantUntouched()
			}
			if !bytes.Equal(a.vaultBytes(), b.vaultBytes()) {
				t.Error("the two devices merged to different headers")
			}
			h, err := crypto.ParseHeader(a.vaultBytes())
			if err != nil || len(h.Slots) != 3 || len(h.Removed) != 1 {
				t.Fatalf("merged header: %v, %+v", err, h)
			}
			// Settled: the old passwords are gone, the new ones stay.
			a.mustRun("fsck", "-q", "--password-file", pwA2, a.cipher)
			b.mustRun("fsck", "-q", "--password-file", pwB2, b.cipher)
			a.wantUntouched()
			b.wantUntouched()
		})
	}
}

// One damaged byte anywhere in sealfs.vault: the recovery key and the
// password still open the vault, without a try spent, and the unlock
// writes back exactly the header as it was.
func TestCLIHeaderByteFlip(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "flip-password")
	rk := e.initVault(pw)
	rkFile := e.secretFile("rk", rk)
	orig := e.vaultBytes()
	n := len(orig)
	half := n / 2
	// The fields of both copies (magic, version, both lengths, body,
	// MAC, checksum), and a spread of body bytes.
	positions := []int{0, 8, 9, 10, 13, 14, 200, half - 69, half - 37, half - 5, half - 1,
		half, half + 9, half + 12, half + 300, n - 69, n - 37, n - 4, n - 1}
	for i, p := range positions {
		b := bytes.Clone(orig)
		b[p] ^= 0x41
		e.writeVault(b)
		if st := e.mustRun("status", e.cipher).stdout; !strings.Contains(st, "is damaged") {
			t.Errorf("byte %d: status does not report the damage:\n%s", p, st)
		}
		auth := []string{"--recovery-key-file", rkFile}
		if i%2 == 1 {
			auth = []string{"--password-file", pw}
		}
		r := e.mustRun(append(append([]string{"fsck", "-q"}, auth...), e.cipher)...)
		if !strings.Contains(r.stderr, "note: vault header repaired: copy") {
			t.Errorf("byte %d: no repair reported:\n%s", p, r.stderr)
		}
		if !bytes.Equal(e.vaultBytes(), orig) {
			t.Fatalf("byte %d: the repaired header differs from the original", p)
		}
	}
	e.wantUntouched()
}

// A format 1 vault (crypto/testdata/vault-v1, written by sealfs before
// issue 14) opens as it is, and its first header change writes format 2.
func TestCLIFormat1VaultMigrates(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	copyDir(t, filepath.Join("..", "crypto", "testdata", "vault-v1"), e.cipher)
	raw, err := os.ReadFile(filepath.Join("..", "crypto", "testdata", "vault-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man struct {
		RecoveryKey string `json:"recovery_key"`
		Entries     map[string]struct {
			SHA256 string `json:"sha256"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	rkFile := e.secretFile("rk", man.RecoveryKey)
	if s := e.status(); s.Format != 1 {
		t.Fatalf("format %d, want 1", s.Format)
	}
	before := e.vaultBytes()
	e.mustRun("fsck", "-q", "--recovery-key-file", rkFile, e.cipher)
	if !bytes.Equal(before, e.vaultBytes()) {
		t.Fatal("reading a format 1 vault rewrote its header")
	}
	pw := e.secretFile("pw", "after-migration")
	r := e.mustRun("enroll", "--recovery-key-file", rkFile, "--password-file", pw, e.cipher)
	if !strings.Contains(r.stderr, "the vault header is now format 2") {
		t.Errorf("enroll did not say it upgraded the header:\n%s", r.stderr)
	}
	if s := e.status(); s.Format != 2 {
		t.Fatalf("after enroll: format %d, want 2", s.Format)
	}
	dest := filepath.Join(e.base, "out")
	e.mustRun("extract", "-q", "--password-file", pw, e.cipher, dest)
	got, err := os.ReadFile(filepath.Join(dest, "hello.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	if want := man.Entries["hello.txt"].SHA256; hex.EncodeToString(sum[:]) != want {
		t.Errorf("hello.txt after migration: sha256 %x, want %s", sum, want)
	}
}
