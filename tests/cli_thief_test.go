package tests

// A thief with the whole machine (issue 14): the TPM's lockout
// authorisation is empty, as on most Linux machines and on swtpm, so the
// thief resets the dictionary-attack lockout whenever it trips
// (TPM2_DictionaryAttackLockReset, built by hand as an attacker's tool
// would) and guesses on. A default slot must still give no more than its
// N guesses in all; a plain slot (--max-tries 0) gives as many as the
// thief has time for, and sealfs says so.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sealfs/sealfs/crypto"
)

// thiefDAReset sends TPM2_DictionaryAttackLockReset with an empty lockout
// password in a TPM_RS_PW session: Part 3 §25.2, laid out byte by byte.
func thiefDAReset(t *testing.T, raw transport.TPM) {
	t.Helper()
	cmd := []byte{0x80, 0x02, 0, 0, 0, 0}                // TPM_ST_SESSIONS, size below
	cmd = binary.BigEndian.AppendUint32(cmd, 0x00000139) // TPM_CC_DictionaryAttackLockReset
	cmd = binary.BigEndian.AppendUint32(cmd, 0x4000000A) // TPM_RH_LOCKOUT
	cmd = binary.BigEndian.AppendUint32(cmd, 9)          // authorization area size
	cmd = binary.BigEndian.AppendUint32(cmd, 0x40000009) // TPM_RS_PW
	cmd = append(cmd, 0, 0, 0, 0, 0)                     // no nonce, no attributes, empty password
	binary.BigEndian.PutUint32(cmd[2:6], uint32(len(cmd)))
	rsp, err := raw.Send(cmd)
	if err != nil || len(rsp) < 10 || binary.BigEndian.Uint32(rsp[6:10]) != 0 {
		t.Fatalf("DictionaryAttackLockReset: %x, %v", rsp, err)
	}
}

// randomAuth is a wrong guess as the TPM sees it: a guessed password after
// the KDF is just another 32-character authValue.
func randomAuth(t *testing.T) []byte {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(base64.StdEncoding.EncodeToString(b))
}

// onlySlot returns the header's only TPM slot.
func onlySlot(t *testing.T, hdr []byte) crypto.Slot {
	t.Helper()
	h, err := crypto.ParseHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	var out []crypto.Slot
	for _, s := range h.Slots {
		if s.Type == crypto.SlotTPM {
			out = append(out, s)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d TPM slots, want 1", len(out))
	}
	return out[0]
}

func TestCLIThiefGetsNGuessesOnDefaultSlot(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, daParams{maxTries: 3, interval: 1000 * time.Second, recovery: 1000 * time.Second})
	pw := e.secretFile("pw", "the-owners-password")
	r := e.mustRun("init", "--password-file", pw, "--no-confirm", e.cipher)
	rk := recoveryKeyRE.FindString(r.stdout)
	e.secrets = append(e.secrets, rk)
	if !strings.Contains(r.stdout, fmt.Sprintf("allows %d consecutive wrong passwords", 10)) || strings.Contains(r.stderr, "warning") {
		t.Fatalf("init without --max-tries did not make a limited slot:\n%s%s", r.stdout, r.stderr)
	}
	e.wantTries(10, 10)
	st := e.mustRun("status", e.cipher).stdout
	if !strings.Contains(st, "lockout password: NONE") || strings.Contains(st, "NO LIMIT") {
		t.Errorf("status of a default slot on a TPM without lockout password:\n%s", st)
	}
	if g := e.limitStatus().Slots[1].Guessing; g != "max_tries" {
		t.Errorf("status --json: guessing %q, want max_tries", g)
	}
	slot := onlySlot(t, e.vaultBytes())
	k := tpmSlot(t, e.vaultBytes())

	// The thief: 3N wrong guesses, resetting the DA lockout before each,
	// then the owner's password (found, say, on a sticky note).
	raw := rawTPM(t, e.tpm)
	evaluated, refused := 0, 0
	for range 30 {
		thiefDAReset(t, raw)
		err := rawPolicySecret(t, raw, k, randomAuth(t))
		switch {
		case errors.Is(err, tpm2.TPMRCBadAuth):
			evaluated++ // the TPM checked this guess
		case errors.Is(err, tpm2.TPMRCAuthUnavailable):
			refused++ // the TPM no longer checks any
		default:
			t.Fatalf("guess: %v", err)
		}
	}
	auth, err := crypto.DeriveAuthValue([]byte("the-owners-password"), slot.KDF)
	if err != nil {
		t.Fatal(err)
	}
	thiefDAReset(t, raw)
	rightErr := rawPolicySecret(t, raw, k, auth)
	raw.Close()
	t.Logf("thief: %d guesses checked by the TPM, %d refused unchecked; the right password then: %v", evaluated, refused, rightErr)
	if evaluated > 10 {
		t.Fatalf("the thief got %d guesses against a slot allowing 10", evaluated)
	}
	if evaluated != 10 || refused != 20 || !errors.Is(rightErr, tpm2.TPMRCAuthUnavailable) {
		t.Fatalf("want 10 guesses checked, 20 refused, and the right password refused: %d, %d, %v", evaluated, refused, rightErr)
	}
	wantExit(t, e.run("mount", "--password-file", pw, e.cipher, e.mnt), 1, "no tries left on this TPM slot")
	e.wantTries(0, 10)
	// The owner's recovery key still opens the vault, and makes a fresh slot.
	pw2 := e.secretFile("pw2", "after-the-theft")
	e.mustRun("recover", "--recovery-key-file", e.secretFile("rk", rk), "--password-file", pw2, e.cipher)
	e.wantTries(10, 10)
	e.mustRun("mount", "--password-file", pw2, e.cipher, e.mnt)
	e.mustRun("unmount", e.mnt)
}

func TestCLIThiefUnlimitedOnPlainSlot(t *testing.T) {
	e := newCLIEnv(t, daParams{maxTries: 3, interval: 1000 * time.Second, recovery: 1000 * time.Second})
	pw := e.secretFile("pw", "plain-slot-password")
	r := e.mustRun("init", "--max-tries", "0", "--password-file", pw, "--no-confirm", e.cipher)
	if !strings.Contains(r.stderr, "warning: --max-tries 0 makes a plain slot") || !strings.Contains(r.stderr, "no lockout password") {
		t.Errorf("init --max-tries 0 without a warning:\n%s", r.stderr)
	}
	st := e.mustRun("status", e.cipher).stdout
	if !strings.Contains(st, "NO LIMIT on guessing") || !strings.Contains(st, "run `sealfs passwd --max-tries 10 "+e.cipher+"`") {
		t.Errorf("status of a plain slot:\n%s", st)
	}
	if s := e.limitStatus().Slots[1]; s.Guessing != "unlimited" || s.Advice != "sealfs passwd --max-tries 10 "+e.cipher {
		t.Errorf("status --json of a plain slot: %+v", s)
	}
	slot := onlySlot(t, e.vaultBytes())
	k := tpmSlot(t, e.vaultBytes())

	raw := rawTPM(t, e.tpm)
	srk := rawSRK(t, raw)
	obj := rawLoad(t, raw, srk, k.Public, k.Private)
	try := func(auth []byte) error {
		_, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name,
			Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth))}}.Execute(raw)
		return err
	}
	const guesses = 60
	evaluated, resets := 0, 0
	start := time.Now()
	for evaluated < guesses {
		err := try(randomAuth(t))
		switch {
		case errors.Is(err, tpm2.TPMRCAuthFail):
			evaluated++
		case errors.Is(err, tpm2.TPMRCLockout):
			thiefDAReset(t, raw)
			resets++
		default:
			t.Fatalf("guess: %v", err)
		}
	}
	elapsed := time.Since(start)
	auth, err := crypto.DeriveAuthValue([]byte("plain-slot-password"), slot.KDF)
	if err != nil {
		t.Fatal(err)
	}
	for {
		err = try(auth)
		if !errors.Is(err, tpm2.TPMRCLockout) {
			break
		}
		thiefDAReset(t, raw)
	}
	raw.Close()
	t.Logf("plain slot: %d wrong guesses checked in %v (%.0f/s through swtpm, KDF excluded), %d lockouts reset; then the right password: %v",
		evaluated, elapsed, float64(evaluated)/elapsed.Seconds(), resets, err)
	if err != nil || resets < guesses/3-1 {
		t.Fatalf("the thief's right password after %d guesses and %d resets: %v", evaluated, resets, err)
	}
}
