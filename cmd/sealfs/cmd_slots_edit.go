package main

import (
	"errors"
	"fmt"

	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

func (a *app) cmdPasswd(dir, newFile string, limit maxTriesFlag) error {
	v, err := a.loadVault(dir)
	if err != nil {
		return err
	}
	if err := v.CheckPins(a.slot); err != nil {
		return a.explainUnlock(v, err)
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	if err := v.CheckPasswordSlots(vault.FromTPM(t), a.slot); err != nil {
		return a.explainUnlock(v, err)
	}
	srk, err := t.SRKName()
	if err != nil {
		return err
	}
	old, err := a.password("Current password", false)
	if err != nil {
		return err
	}
	defer clear(old)
	pw, err := a.newPassword(newFile, "New password")
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := a.intr.err(); err != nil {
		return err
	}
	wasLimited := map[string]bool{}
	for _, s := range v.TPMSlots(srk) {
		wasLimited[s.ID] = vault.Limited(s.TPM)
	}
	opts := vault.PasswdOptions{SlotID: a.slot, MaxTries: limit.value()}
	if n := limit.value(); n != nil && *n == 0 {
		a.warnPlainSlot(t, vault.SealOptions{})
	}
	if err := v.ChangePassword(vault.FromTPM(t), old, pw, opts); err != nil {
		return a.explainUnlock(v, err)
	}
	slot, ok := v.Header.Slot(v.UnlockedSlot())
	if !ok {
		return fmt.Errorf("slot %s vanished from the header", v.UnlockedSlot())
	}
	a.reportPasswd(slot, wasLimited[slot.ID])
	return nil
}

func (sf *slotFlags) opts() (vault.SealOptions, error) {
	if sf.maxTries > tpm.MaxTriesLimit {
		return vault.SealOptions{}, usagef("--max-tries: at most %d (beyond that a limit stops being one)", tpm.MaxTriesLimit)
	}
	return vault.SealOptions{PCRs: sf.pcrs, MaxTries: uint32(sf.maxTries)}, nil
}

type enrollOptions struct {
	slot         *slotFlags
	withPassword bool
	fromTPM      string
	newFile      string
}

func (a *app) cmdEnroll(dir string, o enrollOptions) error {
	opts, err := o.slot.opts()
	if err != nil {
		return err
	}
	if o.fromTPM != "" {
		o.withPassword = true
	}
	if o.withPassword && a.recoveryKeyFile != "" {
		return usagef("enroll: give either --with-password or --recovery-key-file")
	}
	v, err := a.loadVault(dir)
	if err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	a.warnPlainSlot(t, opts)
	var pw []byte
	if o.withPassword {
		from := t
		if o.fromTPM != "" {
			// The other machine's TPM must exist: never a new one.
			if from, err = a.openTPMSpec(o.fromTPM, false); err != nil {
				return err
			}
			defer from.Close()
		}
		if err := a.unlockWithTPM(v, from); err != nil {
			return a.explainUnlock(v, err)
		}
		a.repair(v)
		pw, err = a.newPassword(o.newFile, "Password for the new slot")
	} else {
		if err := a.unlock(v, true); err != nil {
			return err
		}
		pw, err = a.password("Password for the new slot", true)
	}
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := a.intr.err(); err != nil {
		return err
	}
	slot, err := v.AddTPMSlot(vault.FromTPM(t), pw, opts, o.slot.labelOrHost(), false)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Enrolled TPM slot %s for this machine.\n", slot.ID)
	a.reportLimit(slot)
	return nil
}

func (a *app) cmdRevoke(dir, id string, force, withRecovery bool) error {
	v, err := a.loadVault(dir)
	if err != nil {
		return err
	}
	if _, ok := v.Header.Slot(id); !ok {
		return fmt.Errorf("no slot %q in this vault (see `sealfs slots %s`)", id, dir)
	}
	if err := a.unlock(v, withRecovery); err != nil {
		return err
	}
	if err := a.intr.err(); err != nil {
		return err
	}
	removed, err := v.RemoveSlot(id, force)
	if err != nil {
		if errors.Is(err, vault.ErrRecoverySlot) || errors.Is(err, vault.ErrLastSlot) {
			return err
		}
		return fmt.Errorf("revoking %s: %w", id, err)
	}
	if removed.TPM == nil || !vault.Limited(removed.TPM) {
		fmt.Fprintf(a.stdout, "Slot %s removed. Copies of the old header (cloud file versions, backups) still hold it.\n", id)
		return nil
	}
	fmt.Fprintf(a.stdout, "Slot %s removed.\n", id)
	a.releaseLimited(removed)
	return nil
}

// slotIDs lists the slot IDs of the vault in dir, for completion.
func slotIDs(dir string) []string {
	v, err := vault.Load(dir, nil)
	if err != nil {
		return nil
	}
	defer v.Wipe()
	var ids []string
	for _, s := range v.Header.Slots {
		ids = append(ids, s.ID)
	}
	return ids
}
