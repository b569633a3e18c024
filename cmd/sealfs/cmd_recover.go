package main

import (
	"fmt"

	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

func (a *app) cmdRecover(dir string, sf *slotFlags) error {
	opts, err := sf.opts()
	if err != nil {
		return err
	}
	v, err := a.loadVault(dir)
	if err != nil {
		return err
	}
	// The key is checked (typos, then the slot) before the TPM is touched.
	if err := a.unlock(v, true); err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	a.warnPlainSlot(t, opts)
	pw, err := a.password("New password for this machine", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := a.intr.err(); err != nil {
		return err
	}
	srk, err := t.SRKName()
	if err != nil {
		return err
	}
	var replaced []string
	for _, s := range v.TPMSlots(srk) {
		replaced = append(replaced, s.ID)
	}
	// Replaced attempt-limited slots lose their NV index here too.
	slot, err := v.AddTPMSlot(vault.FromTPM(t), pw, opts, sf.labelOrHost(), true)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "New TPM slot %s for this machine.\n", slot.ID)
	for _, id := range replaced {
		fmt.Fprintf(a.stdout, "Replaced this machine's old slot %s.\n", id)
	}
	a.reportLimit(slot)
	a.clearLockout(t, vault.Limited(slot.TPM))
	return nil
}

// clearLockout deals with the TPM's dictionary-attack lockout after a
// recover (issue 5: lock out, recover with the key, mount with the new
// password), and says what it did and why.
//
// An attempt-limited new slot (the default) is NoDA: the lockout neither
// blocks it nor is needed for it, so sealfs leaves the counter alone and
// only says so. A plain new slot is blocked by the lockout; the TPM lets
// whoever holds lockoutAuth reset it. When lockoutAuth is empty (the
// default on Linux, and swtpm's) that is anyone who may use the TPM, so the
// reset grants nothing an attacker with the same access lacks; sealfs does
// it and says so, since it is the very reason such a slot limits nothing.
// When lockoutAuth is set, sealfs never tries: a wrong lockoutAuth blocks
// the lockout hierarchy for LockoutRecovery, and the owner's password is
// not ours to guess.
func (a *app) clearLockout(t *tpm.TPM, limited bool) {
	info, err := t.Lockout()
	if err != nil {
		a.log.Warn("reading the TPM's lockout state", "err", err)
		return
	}
	if !info.InLockout && info.Counter == 0 {
		return
	}
	state := fmt.Sprintf("has counted %d failed passwords", info.Counter)
	if info.Counter == 1 {
		state = "has counted 1 failed password"
	}
	if info.InLockout {
		state = "is locked against password guessing"
	}
	if limited {
		fmt.Fprintf(a.stdout, "This TPM's dictionary-attack lockout %s; the new slot is attempt-limited and does not use it, "+
			"so sealfs leaves it as it is.\n", state)
		return
	}
	if info.LockoutAuthSet {
		a.warnLockout(info)
		return
	}
	if err := t.ResetLockout(nil); err != nil {
		fmt.Fprintf(a.stderr, "note: could not reset this TPM's dictionary-attack counter: %v\n", err)
		a.warnLockout(info)
		return
	}
	fmt.Fprintf(a.stdout, "This TPM %s. The new plain slot would be blocked by that, and this TPM has no lockout password, "+
		"so sealfs reset its dictionary-attack counter to 0 (TPM2_DictionaryAttackLockReset): the new password works now. "+
		"Anyone who can use this TPM can do the same, which is why a plain slot does not limit guessing here.\n", state)
}

// warnLockout tells the user when the new slot cannot be used yet: the
// dictionary-attack lockout is the TPM's, not the slot's.
func (a *app) warnLockout(info tpm.LockoutInfo) {
	if !info.InLockout {
		return
	}
	fmt.Fprintf(a.stderr, "note: this TPM is still locked against password guessing; the new password works once it recovers (up to %s), "+
		"or after its owner runs TPM2_DictionaryAttackLockReset with the TPM's lockout password (sealfs does not guess it). "+
		"Until then: `sealfs mount --with-recovery CIPHERDIR MOUNTPOINT`.\n", info.Interval)
}
