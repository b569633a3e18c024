package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

// What to tell people when the TPM will not open the vault. Every lockout or
// foreign-slot message ends with the two ways out: the recovery key now
// (mount --with-recovery, which changes nothing), and recover or enroll for
// good, with which one fits.

// adviceError is a refusal followed by what the user can do about it.
type adviceError struct {
	err    error
	advice string
}

func (e *adviceError) Error() string { return userMessage(e.err) + "\n" + e.advice }
func (e *adviceError) Unwrap() error { return e.err }

// foreignSlotError replaces tpm.ErrWrongTPM's one line with what this
// machine knows: whether the slot was its own (the TPM was cleared or
// replaced) or another machine's.
type foreignSlotError struct {
	msg string
	err error
}

func (e *foreignSlotError) Error() string { return e.msg }
func (e *foreignSlotError) Unwrap() error { return e.err }

func nowAdvice(dir string) string {
	return "To get at your files now, changing nothing: `sealfs mount --with-recovery " + dir + " MOUNTPOINT` " +
		"(asks for the recovery key; fsck and extract take --with-recovery too)."
}

// explainUnlock adds what the user can do to a refused unlock.
func (a *app) explainUnlock(v *vault.Vault, err error) error {
	dir := v.Dir
	var (
		ae *tpm.AuthError
		le *tpm.LockoutError
		pe *tpm.PCRError
	)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, tpm.ErrTriesExhausted):
		return &exhaustedError{dir: dir, err: err}
	case errors.As(err, &ae) && ae.TriesLeft < 0:
		// The TPM counted the failure but did not say how many remain.
		return fmt.Errorf("%w; see `sealfs status %s`", err, dir)
	case errors.As(err, &le):
		return &adviceError{err: err, advice: nowAdvice(dir) + "\n" +
			"Forgot the password? `sealfs recover " + dir + "` gives this machine a new slot and password; " +
			"new slots are attempt-limited, which this lockout does not block."}
	case errors.Is(err, tpm.ErrWrongTPM):
		return a.foreignSlot(v, err)
	case errors.Is(err, tpm.ErrSlotGone), errors.As(err, &pe):
		return &adviceError{err: err, advice: nowAdvice(dir)}
	case errors.Is(err, vault.ErrNoTPMSlot):
		return &adviceError{err: err, advice: nowAdvice(dir) + "\n" +
			"`sealfs enroll " + dir + "` adds a TPM slot for this machine, so that a password opens it here."}
	}
	return err
}

// foreignSlot tells a TPM that lost this machine's own slot (cleared or
// replaced: this machine's record shows it made or used a slot of the vault
// under another storage root key) from a vault whose slots are other
// machines'.
func (a *app) foreignSlot(v *vault.Vault, err error) error {
	dir := v.Dir
	var srk []byte
	if t, terr := a.openTPM(); terr == nil {
		srk, _ = t.SRKName()
	}
	if srk != nil {
		if id, used, ok := v.FormerTPM(srk); ok {
			return &foreignSlotError{err: err, msg: fmt.Sprintf("this vault's TPM slot %s was made on this machine (last used here "+
				"%s), but this TPM no longer has the key it was sealed with: the TPM was cleared (a firmware update or reset, "+
				"\"Clear TPM\" in the firmware setup, a reinstalled system) or replaced (a new motherboard). The vault itself is intact.\n"+
				"%s\nFor good: `sealfs recover %s` (recovery key, then a new password) replaces that slot with one for this TPM.",
				id, used.Local().Format(time.DateOnly), nowAdvice(dir), dir)}
		}
	}
	return &foreignSlotError{err: err, msg: "this vault's TPM slots belong to other machines; none is for this machine's TPM.\n" +
		nowAdvice(dir) + "\n" +
		"To open it here with a password from now on: `sealfs enroll " + dir + "` adds a slot for this machine and keeps " +
		"the other machines' (with the recovery key, or --with-password --from-tpm SPEC while the other TPM is reachable). " +
		"`sealfs recover " + dir + "` is for replacing this machine's own lost slot."}
}

// softwareTPMNote says once, in init and status, what a software TPM that
// sealfs runs means for the vault (-q silences it).
func (a *app) softwareTPMNote(t *tpm.TPM) {
	if t == nil || !t.Managed() {
		return
	}
	a.notef("this is a software TPM (swtpm, state in %s): the vault's TPM slot is only as safe as that folder, "+
		"and whoever copies it can guess passwords without the TPM's limits. Use the hardware TPM (/dev/tpmrm0) where there is one.",
		strings.TrimPrefix(a.tpmSpecShown(), "swtpm:"))
}
