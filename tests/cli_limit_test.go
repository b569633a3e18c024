package tests

// Attempt-limited TPM slots through the CLI (issue 7), and recovery after a
// dictionary-attack lockout (issue 5), against real swtpm processes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// limitStatus is the part of `sealfs status --json` these tests read.
type limitStatus struct {
	Slots []struct {
		ID        string `json:"id"`
		Type      string `json:"type"`
		ThisTPM   *bool  `json:"this_tpm"`
		MaxTries  uint32 `json:"max_tries"`
		TriesLeft *int   `json:"tries_left"`
		TPMError  string `json:"tpm_error"`
		Guessing  string `json:"guessing"`
		Advice    string `json:"advice"`
	} `json:"slots"`
	TPM *struct {
		LockoutCounter uint32 `json:"lockout_counter"`
		InLockout      bool   `json:"in_lockout"`
		LockoutAuthSet bool   `json:"lockout_auth_set"`
	} `json:"tpm"`
}

func (e *cliEnv) limitStatus() limitStatus {
	e.t.Helper()
	r := e.mustRun("status", "--json", e.cipher)
	var s limitStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

// wantTries checks this TPM's only TPM slot: its limit and tries left as
// `status --json` reports them (max 0: a plain slot).
func (e *cliEnv) wantTries(left, max int) {
	e.t.Helper()
	var found int
	for _, s := range e.limitStatus().Slots {
		if s.Type != crypto.SlotTPM || s.ThisTPM == nil || !*s.ThisTPM {
			continue
		}
		found++
		got := -1
		if s.TriesLeft != nil {
			got = *s.TriesLeft
		}
		if max == 0 && (s.MaxTries != 0 || s.TriesLeft != nil) {
			e.t.Fatalf("slot %s: max %d, left %d; want a plain slot", s.ID, s.MaxTries, got)
		}
		if max > 0 && (int(s.MaxTries) != max || got != left) {
			e.t.Fatalf("slot %s: %d of %d tries left (%s); want %d of %d", s.ID, got, s.MaxTries, s.TPMError, left, max)
		}
	}
	if found != 1 {
		e.t.Fatalf("%d TPM slots of this TPM, want 1", found)
	}
}

// tpmSlot returns this vault's only TPM slot, as stored in hdr, as the tpm
// package's SealedKey: to inspect it from outside the CLI.
func tpmSlot(t *testing.T, hdr []byte) *tpm.SealedKey {
	t.Helper()
	h, err := crypto.ParseHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	var k *tpm.SealedKey
	for _, s := range h.Slots {
		if s.Type != crypto.SlotTPM {
			continue
		}
		if k != nil {
			t.Fatal("more than one TPM slot")
		}
		b := s.TPM
		k = &tpm.SealedKey{Public: b.Public, Private: b.Private, SRKName: b.SRKName, PCRs: b.PCRs, PCRValues: b.PCRValues,
			NVIndex: b.NVIndex, NVName: b.NVName, MaxTries: b.MaxTries}
	}
	if k == nil {
		t.Fatal("no TPM slot")
	}
	return k
}

// wantSlotGone checks, with the TPM, that k's NV index was deleted.
func (e *cliEnv) wantSlotGone(k *tpm.SealedKey) {
	e.t.Helper()
	tp := openTPMNoCleanup(e.t, e.tpm.spec)
	defer tp.Close()
	if _, _, err := tp.TriesLeft(k); !errors.Is(err, tpm.ErrSlotGone) {
		e.t.Fatalf("NV index %#x of a replaced slot: %v; want it deleted", k.NVIndex, err)
	}
}

const (
	triesTail = "; after that only the recovery key opens this vault"
	goneHint  = "Even the right password will not open this TPM slot any more. `sealfs recover "
)

func TestCLILimitFailuresThenSuccessRearms(t *testing.T) {
	requireFUSE(t)
	const n = 4
	e := newCLIEnv(t, daParams{maxTries: 2, interval: 600 * time.Second, recovery: 600 * time.Second})
	pw := e.secretFile("pw", "limited-pw-1207")
	bad := e.secretFile("bad", "guess-1208")
	r := e.mustRun("init", "--max-tries", fmt.Sprint(n), "--password-file", pw, "--no-confirm", e.cipher)
	if !strings.Contains(r.stdout, "allows 4 consecutive wrong passwords; after that only the recovery key opens this vault") {
		t.Errorf("init does not explain the limit:\n%s", r.stdout)
	}
	e.wantTries(n, n)
	before := e.vaultBytes()
	for round := range 2 { // the second round proves that the first success re-armed the slot
		for i := 1; i < n; i++ {
			wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1,
				fmt.Sprintf("sealfs: wrong password: %d of %d tries left%s", n-i, n, triesTail))
			e.wantTries(n-i, n)
		}
		e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
		mustWrite(t, filepath.Join(e.mnt, fmt.Sprintf("round%d", round)), []byte("x"))
		e.mustRun("unmount", e.mnt)
		e.wantTries(n, n)
	}
	if !bytes.Equal(before, e.vaultBytes()) {
		t.Fatal("unlocking an attempt-limited slot rewrote the header (the count lives in the TPM)")
	}
	// The limited slot is NoDA: 6 failures left the TPM-wide lockout (2 tries) alone.
	if s := e.limitStatus(); s.TPM == nil || s.TPM.LockoutCounter != 0 || s.TPM.InLockout {
		t.Errorf("DA state after limited-slot failures: %+v", s.TPM)
	}
	r = e.mustRun("status", e.cipher)
	for _, want := range []string{"this TPM, 4 of 4 tries left", "does not apply to attempt-limited slots"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	if r := e.mustRun("slots", e.cipher); !strings.Contains(r.stdout, "4 of 4 tries left") {
		t.Errorf("slots lacks the tries:\n%s", r.stdout)
	}
	wantExit(t, e.run("init", "--max-tries", "1001", "--password-file", pw, "--no-confirm", filepath.Join(e.base, "v2")), 2, "--max-tries: at most 1000")
}

func TestCLILimitExhaustedThenRecover(t *testing.T) {
	requireFUSE(t)
	const n = 3
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "soon-lost-1209")
	bad := e.secretFile("bad", "guess-1210")
	rk := e.initVault(pw, "--max-tries", fmt.Sprint(n))
	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	mustWrite(t, filepath.Join(e.mnt, "keep.txt"), []byte("survives the lost slot"))
	e.mustRun("unmount", e.mnt)
	old := tpmSlot(t, e.vaultBytes())

	for i := 1; i < n; i++ {
		wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1,
			fmt.Sprintf("wrong password: %d of %d tries left%s", n-i, n, triesTail))
	}
	r := e.run("mount", "--password-file", bad, e.cipher, e.mnt)
	wantExit(t, r, 1, "sealfs: wrong password: that was the last try; only the recovery key opens this vault now")
	wantExit(t, r, 1, goneHint+e.cipher+"` with your recovery key creates a fresh slot with a new password.")
	before := e.vaultBytes()
	// Refused for good, with the way out, even for the right password, by
	// every command that unlocks.
	for _, args := range [][]string{
		{"mount", "--password-file", pw, e.cipher, e.mnt},
		{"passwd", "--password-file", pw, "--new-password-file", pw, e.cipher},
		{"mount", "--password-file", pw, e.cipher, e.mnt},
	} {
		r := e.run(args...)
		wantExit(t, r, 1, "sealfs: no tries left on this TPM slot; only the recovery key opens this vault now")
		wantExit(t, r, 1, goneHint)
	}
	if !bytes.Equal(before, e.vaultBytes()) || isMounted(e.mnt) {
		t.Fatal("a refused unlock changed the header or mounted")
	}
	e.wantTries(0, n)
	if r := e.mustRun("status", e.cipher); !strings.Contains(r.stdout, "NO TRIES LEFT of 3") {
		t.Errorf("status of a used-up slot:\n%s", r.stdout)
	}
	// The TPM enforces it, not sealfs: its own client gets nowhere either.
	raw := rawTPM(t, e.tpm)
	if err := rawPolicySecret(t, raw, old, []byte("x")); err == nil {
		t.Fatal("the TPM accepted a password on a used-up slot")
	}
	raw.Close()

	// The recovery key makes a fresh slot (limited again) in place of the
	// used-up one, whose NV index is deleted; the new password mounts.
	rkFile := e.secretFile("rk", rk)
	pw2 := e.secretFile("pw2", "fresh-1211")
	r = e.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", pw2, "--max-tries", "5", e.cipher)
	for _, want := range []string{"New TPM slot", "Replaced this machine's old slot", "allows 5 consecutive wrong passwords"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("recover output lacks %q:\n%s", want, r.stdout)
		}
	}
	e.wantTries(5, 5)
	e.wantSlotGone(old)
	e.mustRun("mount", "--password-file", pw2, e.cipher, e.mnt)
	if got := string(mustRead(t, filepath.Join(e.mnt, "keep.txt"))); got != "survives the lost slot" {
		t.Errorf("after recover the file reads %q", got)
	}
	e.mustRun("unmount", e.mnt)
}

// runKilled starts sealfs and SIGKILLs it after d (if it is still running):
// a crash at an arbitrary point of the command.
func (e *cliEnv) runKilled(d time.Duration, args ...string) (killed bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sealfsBin, args...)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(d)
	killed = cmd.Process.Signal(syscall.SIGKILL) == nil
	err := cmd.Wait()
	e.stderrAll.Write(errb.Bytes())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return true
		}
	}
	return false
}

// A crash between the TPM's count and anything else costs at most the one
// try that was being made, and never the vault: not in an unlock, not in a
// re-seal (passwd).
func TestCLILimitCrashCostsAtMostOneTry(t *testing.T) {
	requireFUSE(t)
	const n = 60
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "crash-pw-1212")
	bad := e.secretFile("bad", "crash-guess-1213")
	e.initVault(pw, "--max-tries", fmt.Sprint(n))

	// Via the TPM: a wrong guess whose unseal never comes (the client died
	// after PolicySecret) is counted once, by the TPM, and that is all.
	k := tpmSlot(t, e.vaultBytes())
	raw := rawTPM(t, e.tpm)
	if err := rawPolicySecret(t, raw, k, []byte("abandoned guess")); err == nil {
		t.Fatal("wrong password accepted")
	}
	raw.Close()
	e.wantTries(n-1, n)

	// A client that died holding sessions leaves them loaded in a bare
	// swtpm (3 session slots, no resource manager): the next sealfs must
	// flush them, policy sessions included, or the slot cannot be opened.
	raw = rawTPM(t, e.tpm)
	for range 3 {
		if _, _, err := tpm2.PolicySession(raw, tpm2.TPMAlgSHA256, 16); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()
	e.mustRun("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher)
	e.tpm.assertNoHandles(t)
	e.wantTries(n, n)
	raw = rawTPM(t, e.tpm)
	if err := rawPolicySecret(t, raw, tpmSlot(t, e.vaultBytes()), []byte("abandoned guess")); err == nil {
		t.Fatal("wrong password accepted")
	}
	raw.Close()

	// Via the CLI: SIGKILL at points spread over the end of a whole
	// unlock, where the TPM works (session set-up, PolicySecret, Unseal),
	// after the KDF. A full wrong unlock, timed, sets the scale.
	start := time.Now()
	wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1, "wrong password: 58 of 60 tries left")
	full := time.Since(start)
	left := n - 2
	var kills, costly int
	header := e.vaultBytes()
	const attempts = 24
	for i := range attempts {
		d := full * time.Duration(800+10*i) / 1000
		killed := e.runKilled(d, "mount", "--password-file", bad, e.cipher, e.mnt)
		s := e.limitStatus()
		got := *s.Slots[1].TriesLeft
		if got < left-1 || got > left {
			t.Fatalf("kill after %v: %d tries left, was %d; a crash may cost at most one", d, got, left)
		}
		if killed {
			kills++
			if got < left {
				costly++
			}
		}
		left = got
	}
	t.Logf("full unlock %v; %d of %d wrong-password unlocks killed, %d of them after the TPM counted; %d of %d tries left",
		full, kills, attempts, costly, left, n)
	if !bytes.Equal(header, e.vaultBytes()) {
		t.Fatal("a killed unlock changed the header")
	}
	if isMounted(e.mnt) {
		t.Fatal("a killed wrong-password mount left a mount")
	}

	// Killed re-seals: the header always names a working slot.
	for i := range 12 {
		d := time.Duration(i) * 40 * time.Millisecond
		e.runKilled(d, "passwd", "--password-file", pw, "--new-password-file", pw, e.cipher)
		if s := e.limitStatus(); s.Slots[1].TriesLeft == nil || s.Slots[1].TPMError != "" {
			t.Fatalf("after a passwd killed at %v the slot is broken: %+v", d, s.Slots[1])
		}
	}
	// The right password still opens the vault and re-arms the slot.
	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	e.mustRun("unmount", e.mnt)
	e.wantTries(n, n)
	e.tpm.assertNoHandles(t)
}

// passwd --max-tries turns the limit on, changes N and turns it off for an
// existing slot; revoke deletes a limited slot's NV index.
func TestCLILimitPasswdAndRevoke(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "plain-1214")
	pw2 := e.secretFile("pw2", "second-1215")
	bad := e.secretFile("bad", "wr0ng-7731")
	rk := e.initVault(pw, "--max-tries", "0")
	e.wantTries(0, 0)

	// On, same password: the old plain blob in old header copies is
	// something no TPM can take back, and the user is told.
	r := e.mustRun("passwd", "--max-tries", "3", "--password-file", pw, "--new-password-file", pw, e.cipher)
	if !strings.Contains(r.stdout, "allows 3 consecutive wrong passwords") || !strings.Contains(r.stderr, "the old password is not revoked everywhere") {
		t.Errorf("passwd --max-tries 3:\n%s%s", r.stdout, r.stderr)
	}
	e.wantTries(3, 3)
	wantExit(t, e.run("passwd", "--password-file", bad, "--new-password-file", bad, e.cipher), 1,
		"sealfs: wrong password: 2 of 3 tries left"+triesTail)
	first := tpmSlot(t, e.vaultBytes())

	// Change N and the password: a new NV index, the old one deleted.
	e.mustRun("passwd", "--max-tries", "5", "--password-file", pw, "--new-password-file", pw2, e.cipher)
	e.wantTries(5, 5)
	e.wantSlotGone(first)
	wantExit(t, e.run("passwd", "--password-file", pw, "--new-password-file", pw, e.cipher), 1,
		"wrong password: 4 of 5 tries left"+triesTail)
	// A plain passwd keeps the limit (and re-arms it).
	second := tpmSlot(t, e.vaultBytes())
	e.mustRun("passwd", "--password-file", pw2, "--new-password-file", pw2, e.cipher)
	e.wantTries(5, 5)
	e.wantSlotGone(second)

	// Off: a plain slot again, throttled by the DA lockout only.
	third := tpmSlot(t, e.vaultBytes())
	r = e.mustRun("passwd", "--max-tries", "0", "--password-file", pw2, "--new-password-file", pw, e.cipher)
	if !strings.Contains(r.stdout, "no longer limits tries") {
		t.Errorf("passwd --max-tries 0: %s", r.stdout)
	}
	e.wantTries(0, 0)
	e.wantSlotGone(third)
	wantExit(t, e.run("passwd", "--password-file", bad, "--new-password-file", bad, e.cipher), 1,
		"wrong password (4 tries left before the TPM locks")
	wantExit(t, e.run("passwd", "--max-tries", "x", e.cipher), 2, "want a number 0-1000")

	// Revoke a limited slot: the header first, then its NV index.
	e.mustRun("enroll", "--max-tries", "2", "--recovery-key-file", e.secretFile("rk", rk), "--password-file", pw2, e.cipher)
	var limitedID string
	var limited *tpm.SealedKey
	h, err := crypto.ParseHeader(e.vaultBytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range h.Slots {
		if s.TPM != nil && s.TPM.MaxTries == 2 {
			limitedID = s.ID
			b := s.TPM
			limited = &tpm.SealedKey{SRKName: b.SRKName, NVIndex: b.NVIndex, NVName: b.NVName, MaxTries: b.MaxTries}
		}
	}
	if limited == nil {
		t.Fatal("enroll --max-tries 2 made no limited slot")
	}
	r = e.mustRun("revoke", "--password-file", pw, e.cipher, limitedID)
	if !strings.Contains(r.stdout, fmt.Sprintf("Its NV index %#x is deleted from this TPM", limited.NVIndex)) {
		t.Errorf("revoke of a limited slot: %s", r.stdout)
	}
	e.wantSlotGone(limited)
	e.wantTries(0, 0)
}

// The forgotten-password path (issue 5) after a plain slot locked the TPM
// out: the recovery key proves the user. recover with the default
// (attempt-limited) slot leaves the DA counter alone and says why: the new
// slot does not use it, and mounts at once in lockout. Only a plain new
// slot makes recover reset the counter (the lockout auth is empty, so
// anyone may), and it says so.
func TestCLIRecoverLockoutSaysWhy(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, daParams{maxTries: 2, interval: 1000 * time.Second, recovery: 1000 * time.Second})
	pw := e.secretFile("pw", "lost-1216")
	bad := e.secretFile("bad", "guess-4242")
	rk := e.initVault(pw, "--max-tries", "0")
	for range 2 {
		wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1, "wrong password (")
	}
	if s := e.limitStatus(); !s.TPM.InLockout || s.TPM.LockoutAuthSet {
		t.Fatalf("set-up: %+v", s.TPM)
	}
	rkFile := e.secretFile("rk", rk)
	pw2 := e.secretFile("pw2", "new-1217")
	r := e.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", pw2, e.cipher)
	if !strings.Contains(r.stdout, "This TPM's dictionary-attack lockout is locked against password guessing; the new slot is attempt-limited and does not use it, so sealfs leaves it as it is.") {
		t.Errorf("recover with a limited slot:\n%s%s", r.stdout, r.stderr)
	}
	if s := e.limitStatus(); !s.TPM.InLockout {
		t.Errorf("recover reset the lockout behind the user's back: %+v", s.TPM)
	}
	e.mustRun("mount", "--password-file", pw2, e.cipher, e.mnt)
	e.mustRun("unmount", e.mnt)

	// A plain new slot: the reset, said out loud.
	r = e.mustRun("recover", "--max-tries", "0", "--recovery-key-file", rkFile, "--password-file", pw, e.cipher)
	if !strings.Contains(r.stdout, "This TPM is locked against password guessing. The new plain slot would be blocked by that, "+
		"and this TPM has no lockout password, so sealfs reset its dictionary-attack counter to 0") {
		t.Errorf("recover --max-tries 0 in lockout:\n%s", r.stdout)
	}
	if s := e.limitStatus(); s.TPM.InLockout || s.TPM.LockoutCounter != 0 {
		t.Errorf("after recover: %+v", s.TPM)
	}
	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	e.mustRun("unmount", e.mnt)

	// A counter above 0 without lockout is cleared too, for a plain slot.
	wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1, "wrong password (1 try left")
	r = e.mustRun("recover", "--max-tries", "0", "--recovery-key-file", rkFile, "--password-file", pw, e.cipher)
	if !strings.Contains(r.stdout, "This TPM has counted 1 failed password.") || e.limitStatus().TPM.LockoutCounter != 0 {
		t.Errorf("recover with the counter at 1:\n%s", r.stdout)
	}
}

// With a lockout password set, recover never tries to reset: a wrong
// lockoutAuth would lock the lockout hierarchy itself.
func TestCLIRecoverKeepsLockoutWithLockoutAuth(t *testing.T) {
	e := newCLIEnv(t, daParams{maxTries: 1, interval: 1000 * time.Second, recovery: 1000 * time.Second})
	pw := e.secretFile("pw", "pw-5150")
	bad := e.secretFile("bad", "guess-5151")
	rk := e.initVault(pw, "--max-tries", "0")
	lockoutAuth := []byte("owner's lockout password")
	raw := rawTPM(t, e.tpm)
	if _, err := (tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHLockout, Auth: tpm2.PasswordAuth(nil)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: lockoutAuth},
	}).Execute(raw); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	wantExit(t, e.run("mount", "--password-file", bad, e.cipher, e.mnt), 1, "wrong password (no tries left")
	if s := e.limitStatus(); !s.TPM.InLockout || !s.TPM.LockoutAuthSet {
		t.Fatalf("set-up: %+v", s.TPM)
	}
	r := e.mustRun("recover", "--max-tries", "0", "--recovery-key-file", e.secretFile("rk", rk), "--password-file", e.secretFile("pw2", "pw2-5152"), e.cipher)
	if !strings.Contains(r.stderr, "still locked") || strings.Contains(r.stdout, "reset") {
		t.Errorf("recover with a lockout password:\n%s%s", r.stdout, r.stderr)
	}
	if s := e.limitStatus(); !s.TPM.InLockout {
		t.Error("recover reset a lockout it had no password for")
	}
	// No failed lockout authorisation happened: the owner's reset works.
	tp := openTPMNoCleanup(t, e.tpm.spec)
	defer tp.Close()
	if err := tp.ResetLockout(lockoutAuth); err != nil {
		t.Fatalf("the lockout hierarchy is blocked after recover: %v", err)
	}
}
