package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

// Attempt-limited TPM slots (issue 7, tpm/limited.go) as the CLI shows them.

// defaultMaxTries is the attempt limit of a new TPM slot (init, recover,
// enroll) unless --max-tries says otherwise. The TPM's dictionary-attack
// lockout is no limit on a machine whose lockout authorisation is empty
// (most Linux machines, and swtpm): whoever can send TPM commands resets it
// with TPM2_DictionaryAttackLockReset after each lockout. A PIN-fail index
// is untouched by that reset, so a limited slot gives a thief N guesses in
// all (tests/cli_thief_test.go). 10 leaves room for typos and a forgotten
// caps lock; a right password restores all of them.
const defaultMaxTries = 10

// warnPlainSlot says what a plain slot (--max-tries 0) means on this TPM,
// before it is made: on one whose lockout anyone can reset, nothing limits
// guessing.
func (a *app) warnPlainSlot(t *tpm.TPM, opts vault.SealOptions) {
	if opts.MaxTries > 0 {
		return
	}
	info, err := t.Lockout()
	switch {
	case err != nil:
		fmt.Fprintf(a.stderr, "warning: --max-tries 0 makes a plain slot, which only the TPM's dictionary-attack lockout throttles; "+
			"its state could not be read (%v)\n", err)
	case !info.LockoutAuthSet:
		fmt.Fprintf(a.stderr, "warning: --max-tries 0 makes a plain slot, which only the TPM's dictionary-attack lockout throttles, "+
			"and this TPM has no lockout password: anyone who can use it resets the lockout (TPM2_DictionaryAttackLockReset) "+
			"and guesses without limit. Without --max-tries the slot allows %d wrong passwords in all.\n", defaultMaxTries)
	default:
		fmt.Fprintf(a.stderr, "note: --max-tries 0 makes a plain slot: %d wrong passwords lock the TPM, then one more try every %s; "+
			"resetting that needs this TPM's lockout password.\n", info.MaxTries, info.Interval)
	}
}

// maxTriesFlag is passwd's --max-tries: unlike init's, "not given" (keep
// the slot's limit) differs from 0 (no limit).
type maxTriesFlag struct {
	n   uint32
	set bool
}

func (f *maxTriesFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return strconv.FormatUint(uint64(f.n), 10)
}

func (f *maxTriesFlag) Type() string { return "N" }

func (f *maxTriesFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > tpm.MaxTriesLimit {
		return fmt.Errorf("want a number 0-%d (0: no limit)", tpm.MaxTriesLimit)
	}
	f.n, f.set = uint32(n), true
	return nil
}

func (f *maxTriesFlag) value() *uint32 {
	if !f.set {
		return nil
	}
	n := f.n
	return &n
}

// reportLimit says what an attempt-limited slot means when it is made.
func (a *app) reportLimit(slot *crypto.Slot) {
	if !vault.Limited(slot.TPM) {
		return
	}
	fmt.Fprintf(a.stdout, "TPM slot %s allows %d consecutive wrong passwords; after that only the recovery key opens this vault.\n",
		slot.ID, slot.TPM.MaxTries)
}

func (a *app) reportPasswd(slot *crypto.Slot, wasLimited bool) {
	fmt.Fprintf(a.stdout, "Password of slot %s changed.\n", slot.ID)
	limited := vault.Limited(slot.TPM)
	switch {
	case limited:
		a.reportLimit(slot)
	case wasLimited:
		fmt.Fprintf(a.stdout, "Slot %s no longer limits tries; the TPM's dictionary-attack lockout still throttles guessing.\n", slot.ID)
	}
	if !wasLimited {
		// A plain blob lives only in the header: nothing in the TPM can
		// take it back (tpm/limited.go, docs/threat-model.md). A limited
		// slot's old NV index is deleted, and its old blob with it.
		fmt.Fprintln(a.stderr, "note: the old password is not revoked everywhere: copies of the old header (cloud file versions, "+
			"backups) still hold the old plain slot, which on this machine opens with the old password, throttled only by the TPM's "+
			"dictionary-attack lockout; no TPM command can revoke a plain slot. Attempt-limited slots (the default; `--max-tries N`) "+
			"do not have this problem: changing their password deletes the old NV index, and old copies with it.")
	}
}

// releaseLimited deletes a revoked attempt-limited slot's NV index, so that
// no copy of the old header can open it any more, or says why it could not.
func (a *app) releaseLimited(slot *crypto.Slot) {
	nv := fmt.Sprintf("%#x", slot.TPM.NVIndex)
	t, err := a.openTPM()
	if err == nil {
		err = vault.ReleaseSlot(vault.FromTPM(t), slot)
	}
	switch {
	case err == nil:
		fmt.Fprintf(a.stdout, "Its NV index %s is deleted from this TPM: no copy of the old header can open the slot any more.\n", nv)
	case errors.Is(err, vault.ErrOtherMachine):
		fmt.Fprintf(a.stderr, "note: the slot lives in another machine's TPM; its NV index %s stays defined there, so copies of the old header "+
			"still open it on that machine until its tries run out. Delete the index there (`tpm2_nvundefine %s`) to end that.\n", nv, nv)
	default:
		fmt.Fprintf(a.stderr, "note: could not delete the slot's NV index %s from the TPM (%s); copies of the old header still open it "+
			"with its password until its tries run out. Delete it with `tpm2_nvundefine %s`.\n", nv, userMessage(err), nv)
	}
}

// exhaustedError is an attempt-limited slot's final refusal, with the one
// way out.
type exhaustedError struct {
	dir string
	err error
}

func (e *exhaustedError) Error() string {
	first := tpm.ErrTriesExhausted.Error()
	var te *tpm.TriesError
	switch {
	case errors.As(e.err, &te):
		first = te.Error() // "wrong password: that was the last try; …"
	case errors.Is(e.err, tpm.ErrTriesUsedUp):
		first = tpm.ErrTriesUsedUp.Error()
	}
	return first + "\nEven the right password will not open this TPM slot any more. " +
		"`sealfs recover " + e.dir + "` with your recovery key creates a fresh slot with a new password. " +
		"To get at your files now, changing nothing: `sealfs mount --with-recovery " + e.dir + " MOUNTPOINT`."
}

func (e *exhaustedError) Unwrap() error { return e.err }

// slotTries fills in a limited slot's tries left from this TPM.
func slotTries(s vault.Sealer, b *crypto.TPMBlob, r *slotReport) {
	left, _, err := s.TriesLeft(b)
	if err != nil {
		r.TPMError = userMessage(err)
		return
	}
	r.TriesLeft = &left
}

// triesDetail is the DETAILS column of a limited slot.
func triesDetail(s slotReport) string {
	switch {
	case s.TriesLeft == nil:
		return fmt.Sprintf("max %d tries", s.MaxTries)
	case *s.TriesLeft == 0:
		return fmt.Sprintf("NO TRIES LEFT of %d: only the recovery key opens the vault (`sealfs recover`)", s.MaxTries)
	}
	return fmt.Sprintf("%d of %d tries left", *s.TriesLeft, s.MaxTries)
}

// hasLimited reports whether this TPM holds an attempt-limited slot.
func hasLimited(r *statusReport) bool {
	for _, s := range r.Slots {
		if s.MaxTries > 0 && s.ThisTPM != nil && *s.ThisTPM {
			return true
		}
	}
	return false
}
