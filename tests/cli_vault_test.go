package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// statusJSON is the part of `sealfs status --json` the tests read.
type statusJSON struct {
	Format int `json:"format"`
	Slots  []struct {
		ID, Type string
		ThisTPM  *bool `json:"this_tpm"`
	} `json:"slots"`
	TPM *struct {
		LockoutCounter uint32  `json:"lockout_counter"`
		MaxTries       uint32  `json:"max_tries"`
		InLockout      bool    `json:"in_lockout"`
		RecoveryIn     float64 `json:"time_to_recovery_seconds"`
	} `json:"tpm"`
}

func (e *cliEnv) status() statusJSON {
	e.t.Helper()
	r := e.mustRun("status", "--json", e.cipher)
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

func TestCLIInitStatus(t *testing.T) {
	e := newCLIEnv(t, daParams{maxTries: 7, interval: 600 * time.Second, recovery: 600 * time.Second})
	pw := e.secretFile("pw", "correct horse battery staple")
	e.initVault(pw)

	s := e.status()
	var types []string
	for _, sl := range s.Slots {
		types = append(types, sl.Type)
		if sl.Type == crypto.SlotTPM && (sl.ThisTPM == nil || !*sl.ThisTPM) {
			t.Errorf("TPM slot %s not reported as this TPM's", sl.ID)
		}
	}
	if strings.Join(types, ",") != "recovery,tpm" {
		t.Errorf("slots %v, want a recovery and a TPM slot", types)
	}
	if s.TPM == nil || s.TPM.MaxTries != 7 || s.TPM.LockoutCounter != 0 || s.TPM.InLockout {
		t.Errorf("tpm status %+v, want max 7 tries, counter 0", s.TPM)
	}
	r := e.mustRun("status", e.cipher)
	for _, want := range []string{"this TPM", "0 of 7", "one failure forgotten every 10m0s"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	e.mustRun("slots", e.cipher)

	wantExit(t, e.run("init", "--password-file", pw, "--no-confirm", e.cipher), 1, "already holds a sealfs vault")
	wantExit(t, e.run("status", filepath.Join(e.base, "nothing")), 1, "not a sealfs vault (no sealfs.vault in")
	wantExit(t, e.run("init"), 2, "")
	wantExit(t, e.run("frobnicate"), 2, "unknown command")
	// A password is never an argument: there is no flag that takes one.
	wantExit(t, e.run("init", "--password", "x", e.cipher), 2, "sealfs: init: unknown flag: --password (see `sealfs init --help`)")
	// No terminal and no password source: say how to give one.
	wantExit(t, e.run("init", "--no-confirm", filepath.Join(e.base, "v2")), 1, "--password-file")

	// A folder with files of its own is refused before any password or TPM
	// use; one holding only a sync service's files is fine.
	busy := filepath.Join(e.base, "busy")
	os.MkdirAll(filepath.Join(busy, ".stfolder"), 0o755)
	mustWrite(t, filepath.Join(busy, "notes.txt"), []byte("mine"))
	wantExit(t, e.run("init", "--password-file", pw, "--no-confirm", busy), 1, "is not empty (1 entries: notes.txt)")
	if _, err := os.Stat(filepath.Join(busy, crypto.HeaderFileName)); err == nil {
		t.Error("init wrote a header into a non-empty folder")
	}
	synced := filepath.Join(e.base, "synced")
	for _, d := range []string{".stfolder", ".stversions"} {
		os.MkdirAll(filepath.Join(synced, d), 0o755)
	}
	for _, f := range []string{".stignore", ".dropbox", "desktop.ini", ".DS_Store", "Thumbs.db"} {
		mustWrite(t, filepath.Join(synced, f), nil)
	}
	e.mustRun("init", "--password-file", pw, "--no-confirm", synced)
}

func TestCLIWrongPassword(t *testing.T) {
	e := newCLIEnv(t, daParams{maxTries: 5, interval: 900 * time.Second, recovery: 900 * time.Second})
	pw := e.secretFile("pw", "right one")
	bad := e.secretFile("bad", "wrong one")
	e.initVault(pw, "--max-tries", "0") // the DA lockout's messages; limited slots: cli_limit_test.go
	before := e.vaultBytes()

	r := e.run("mount", "--password-file", bad, e.cipher, e.mnt)
	wantExit(t, r, 1, "sealfs: wrong password (4 tries left before the TPM locks for 15 minutes)")
	if !bytes.Equal(before, e.vaultBytes()) {
		t.Fatal("a failed unlock changed the vault header")
	}
	if isMounted(e.mnt) {
		t.Fatal("mounted with a wrong password")
	}
	if s := e.status(); s.TPM.LockoutCounter != 1 {
		t.Errorf("lockout counter %d after one failure, want 1", s.TPM.LockoutCounter)
	}
	wantExit(t, e.run("passwd", "--password-file", bad, "--new-password-file", bad, e.cipher), 1,
		"wrong password (3 tries left")
	if !bytes.Equal(before, e.vaultBytes()) {
		t.Fatal("a refused passwd changed the vault header")
	}
}

func TestCLILockout(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, daParams{maxTries: 2, interval: 120 * time.Second, recovery: 120 * time.Second})
	pw := e.secretFile("pw", "pw-lockout")
	bad := e.secretFile("bad", "nope")
	rk := e.initVault(pw, "--max-tries", "0")
	wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1, "wrong password (1 try left")
	wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1, "wrong password (no tries left")
	before := e.vaultBytes()
	// Now even the right password is refused, with the way out.
	r := e.run("mount", "--password-file", pw, e.cipher, e.mnt)
	wantExit(t, r, 1, "the TPM is locked against password guessing; retry in 2 minutes or use `sealfs recover` with your recovery key")
	wantExit(t, r, 1, "\nTo get at your files now, changing nothing: `sealfs mount --with-recovery "+e.cipher+" MOUNTPOINT`")
	wantExit(t, r, 1, "\nForgot the password? `sealfs recover "+e.cipher+"` gives this machine a new slot and password")
	if !bytes.Equal(before, e.vaultBytes()) {
		t.Fatal("a refused unlock changed the vault header")
	}
	if s := e.status(); !s.TPM.InLockout || s.TPM.RecoveryIn != 120 {
		t.Errorf("status in lockout: %+v", s.TPM)
	}
	// The recovery key does not go through the TPM's DA logic. Having
	// proven it, recover of a plain slot resets the counter (this TPM's
	// lockout auth is empty, so anyone may) and the new password works at
	// once.
	rkFile := e.secretFile("rk", rk)
	pw2 := e.secretFile("pw2", "after lockout")
	r = e.mustRun("recover", "--max-tries", "0", "--recovery-key-file", rkFile, "--password-file", pw2, e.cipher)
	if !strings.Contains(r.stdout, "reset its dictionary-attack counter to 0") || strings.Contains(r.stderr, "still locked") {
		t.Errorf("recover in lockout did not reset it:\n%s%s", r.stdout, r.stderr)
	}
	if s := e.status(); s.TPM.InLockout || s.TPM.LockoutCounter != 0 {
		t.Errorf("status after recover: %+v", s.TPM)
	}
	e.mustRun("mount", "--password-file", pw2, e.cipher, e.mnt)
	e.mustRun("unmount", e.mnt)
}

func TestCLIPasswd(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	old := e.secretFile("old", "old password")
	next := e.secretFile("new", "new password")
	e.initVault(old)
	e.mustRun("mount", "--password-file", old, e.cipher, e.mnt)
	mustWrite(t, filepath.Join(e.mnt, "before.txt"), []byte("written before passwd"))
	e.mustRun("unmount", e.mnt)

	r := e.mustRun("passwd", "--password-file", old, "--new-password-file", next, e.cipher)
	if !strings.Contains(r.stdout, "changed") {
		t.Errorf("passwd output: %s", r.stdout)
	}
	wantExit(t, e.run("mount", "--password-file", old, e.cipher, e.mnt), 1, "wrong password")
	e.mustRun("mount", "--password-file", next, e.cipher, e.mnt)
	if got := string(mustRead(t, filepath.Join(e.mnt, "before.txt"))); got != "written before passwd" {
		t.Errorf("after passwd the file reads %q", got)
	}
	e.mustRun("unmount", e.mnt)
	if n := len(e.status().Slots); n != 2 {
		t.Errorf("%d slots after passwd, want 2 (the slot is replaced, not added)", n)
	}
}

func TestCLIRecoverOnSecondTPM(t *testing.T) {
	requireFUSE(t)
	a := newCLIEnv(t, defaultDA)
	pw := a.secretFile("pw", "machine A password")
	rk := a.initVault(pw)
	a.mustRun("mount", "--password-file", pw, a.cipher, a.mnt)
	mustWrite(t, filepath.Join(a.mnt, "doc.txt"), []byte("from machine A"))
	a.mustRun("unmount", a.mnt)

	// Machine B: another swtpm, a copy of the cloud folder.
	b := newCLIEnv(t, defaultDA)
	copyDir(t, a.cipher, b.cipher)
	pwB := b.secretFile("pwB", "machine B password")
	b.secrets = append(b.secrets, rk, "machine A password")
	before := b.vaultBytes()
	r := b.run("mount", "--password-file", pwB, b.cipher, b.mnt)
	wantExit(t, r, 1, "sealfs: this vault's TPM slots belong to other machines; none is for this machine's TPM.")
	wantExit(t, r, 1, "`sealfs mount --with-recovery "+b.cipher+" MOUNTPOINT`")
	wantExit(t, r, 1, "`sealfs enroll "+b.cipher+"` adds a slot for this machine")

	// Typos are reported with their group before anything else happens.
	typo := []byte(rk)
	typo[3*10+4] ^= 1 // a digit of group 4 (9 characters and a dash per group)
	if typo[34] == '-' {
		t.Fatal("test bug: flipped a dash")
	}
	typoFile := b.secretFile("typo", string(typo))
	wantExit(t, b.run("recover", "--recovery-key-file", typoFile, "--password-file", pwB, b.cipher), 1,
		"recovery key mistyped: group 4 looks wrong")
	other, _ := crypto.NewRecoveryKey()
	otherFile := b.secretFile("other", other.String())
	wantExit(t, b.run("recover", "--recovery-key-file", otherFile, "--password-file", pwB, b.cipher), 1,
		"this recovery key does not open this vault")
	if !bytes.Equal(before, b.vaultBytes()) {
		t.Fatal("a failed recover changed the vault header")
	}

	rkFile := b.secretFile("rk", rk)
	b.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", pwB, b.cipher)
	b.mustRun("mount", "--password-file", pwB, b.cipher, b.mnt)
	if got := string(mustRead(t, filepath.Join(b.mnt, "doc.txt"))); got != "from machine A" {
		t.Errorf("on machine B the file reads %q", got)
	}
	b.mustRun("unmount", b.mnt)
	var this, others int
	for _, s := range b.status().Slots {
		if s.ThisTPM != nil && *s.ThisTPM {
			this++
		} else if s.Type == crypto.SlotTPM {
			others++
		}
	}
	if this != 1 || others != 1 {
		t.Errorf("after recover on B: %d slots of this TPM, %d of others; want 1 and 1", this, others)
	}
	// A second recover replaces B's slot instead of piling up slots.
	b.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", pwB, b.cipher)
	if n := len(b.status().Slots); n != 3 {
		t.Errorf("%d slots after a second recover, want 3", n)
	}
}

func TestCLIEnrollRevoke(t *testing.T) {
	a := newCLIEnv(t, defaultDA)
	pw := a.secretFile("pw", "enroll pw")
	rk := a.initVault(pw)
	rkFile := a.secretFile("rk", rk)
	pw2 := a.secretFile("pw2", "second slot pw")
	// Enroll a second slot on the same TPM, authorised by the first one's
	// password: both passwords then open the vault.
	a.mustRun("enroll", "--with-password", "--password-file", pw, "--new-password-file", pw2, a.cipher)
	s := a.status()
	if len(s.Slots) != 3 {
		t.Fatalf("%d slots after enroll, want 3", len(s.Slots))
	}
	var recoveryID, tpmID string
	for _, sl := range s.Slots {
		switch sl.Type {
		case crypto.SlotRecovery:
			recoveryID = sl.ID
		case crypto.SlotTPM:
			tpmID = sl.ID // the enrolled one comes last
		}
	}
	a.mustRun("passwd", "--slot", tpmID, "--password-file", pw2, "--new-password-file", pw2, a.cipher)

	wantExit(t, a.run("revoke", "--password-file", pw, a.cipher, recoveryID), 1, "refusing to remove the recovery slot")
	wantExit(t, a.run("revoke", "--password-file", pw, a.cipher, "tpm-nonexistent"), 1, "no slot")
	a.mustRun("revoke", "--recovery-key-file", rkFile, a.cipher, tpmID)
	if n := len(a.status().Slots); n != 2 {
		t.Fatalf("%d slots after revoke, want 2", n)
	}
	// The remaining TPM slot may go: the recovery key still opens the vault.
	var last string
	for _, sl := range a.status().Slots {
		if sl.Type == crypto.SlotTPM {
			last = sl.ID
		}
	}
	a.mustRun("revoke", "--recovery-key-file", rkFile, a.cipher, last)
	// The recovery slot is now the only way in: never removable.
	wantExit(t, a.run("revoke", "--force", "--recovery-key-file", rkFile, a.cipher, recoveryID), 1, "last slot")
	wantExit(t, a.run("mount", "--password-file", pw, a.cipher, a.mnt), 1, "no TPM slot")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(dst, fi.Mode().Perm())
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCLIPCRBinding(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "pcr pw")
	e.initVault(pw, "--pcr", "16")
	e.mustRun("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher)

	tp := openTPMNoCleanup(t, e.tpm.spec)
	if err := tp.PCRExtend(16, []byte("boot changed")); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	before := e.vaultBytes()
	wantExit(t, e.run("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher), 1, "PCR 16 differ")
	if !bytes.Equal(before, e.vaultBytes()) {
		t.Fatal("a refused unlock changed the vault header")
	}
	tp = openTPMNoCleanup(t, e.tpm.spec)
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	e.mustRun("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher)

	// PCR binding on an attempt-limited slot: a changed PCR is refused
	// before the password is tried, so it costs no try.
	v2 := filepath.Join(e.base, "v2")
	e.mustRun("init", "--max-tries", "3", "--pcr", "16", "--password-file", pw, "--no-confirm", v2)
	tp = openTPMNoCleanup(t, e.tpm.spec)
	if err := tp.PCRExtend(16, []byte("boot changed again")); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	wantExit(t, e.run("passwd", "--password-file", pw, "--new-password-file", pw, v2), 1, "PCR 16 differ")
	if r := e.mustRun("slots", v2); !strings.Contains(r.stdout, "PCRs [16], 3 of 3 tries left") {
		t.Errorf("a PCR refusal cost a try:\n%s", r.stdout)
	}
	tp = openTPMNoCleanup(t, e.tpm.spec)
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	e.mustRun("passwd", "--password-file", pw, "--new-password-file", pw, v2)

	// A failed init (bad flag, no TPM) leaves no directory behind; a seal
	// failure inside vault.Create is covered in internal/vault.
	v3 := filepath.Join(e.base, "v3")
	wantExit(t, e.run("init", "--pcr", "99", "--password-file", pw, "--no-confirm", v3), 2, "PCR")
	wantExit(t, e.run("init", "--max-tries", "3", "--pcr", "16", "--tpm", "unix:"+filepath.Join(e.base, "nosock"), "--password-file", pw, "--no-confirm", v3), 1, "no TPM")
	if _, err := os.Stat(v3); err == nil {
		t.Error("a failed init left its directory behind")
	}
}

func openTPMNoCleanup(t *testing.T, spec string) *tpm.TPM {
	t.Helper()
	tp, err := tpm.Open(spec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return tp
}
