package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

func cmdPasswd(a *app, args []string) error {
	fs := a.flagSet("passwd")
	newFile := fs.String("new-password-file", "", "read the new password from `FILE` (else asked twice)")
	var limit maxTriesFlag
	fs.Var(&limit, "max-tries", "also set the slot's attempt limit: after `N` consecutive wrong passwords only the recovery key opens the vault (0: no limit; default: keep the slot's)")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	v, err := a.loadVault(pos[0])
	if err != nil {
		return err
	}
	if err := v.CheckPins(a.slot); err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	if err := v.CheckPasswordSlots(vault.FromTPM(t), a.slot); err != nil {
		return err
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
	pw, err := newPassword(*newFile, "New password")
	if err != nil {
		return err
	}
	defer clear(pw)
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

// slotFlags are the policy flags of a new TPM slot.
type slotFlags struct {
	pcrs     pcrList
	maxTries *uint
	label    *string
}

func addSlotFlags(fs *flag.FlagSet) *slotFlags {
	sf := &slotFlags{}
	fs.Var(&sf.pcrs, "pcr", "also bind the new TPM slot to these PCRs (e.g. 7 or 0,7)")
	sf.maxTries = fs.Uint("max-tries", defaultMaxTries, "the TPM ends the new slot for good after `N` consecutive wrong passwords (a right one restores all N); "+
		"after that only the recovery key opens the vault. 0: a plain slot, limited only by the TPM's dictionary-attack lockout, which on most machines anyone can reset")
	sf.label = fs.String("label", hostname(), "label of the new TPM slot")
	return sf
}

func (sf *slotFlags) opts() (vault.SealOptions, error) {
	if *sf.maxTries > tpm.MaxTriesLimit {
		return vault.SealOptions{}, usagef("--max-tries: at most %d (beyond that a limit stops being one)", tpm.MaxTriesLimit)
	}
	return vault.SealOptions{PCRs: sf.pcrs, MaxTries: uint32(*sf.maxTries)}, nil
}

func cmdEnroll(a *app, args []string) error {
	fs := a.flagSet("enroll")
	sf := addSlotFlags(fs)
	withPassword := fs.Bool("with-password", false, "authorise with the password of an existing slot instead of the recovery key")
	fromTPM := fs.String("from-tpm", "", "with --with-password: the TPM (`SPEC`) holding that slot (default: the --tpm one)")
	newFile := fs.String("new-password-file", "", "with --with-password: read the new slot's password from `FILE`")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	opts, err := sf.opts()
	if err != nil {
		return err
	}
	v, err := a.loadVault(pos[0])
	if err != nil {
		return err
	}
	if *fromTPM != "" {
		*withPassword = true
	}
	if *withPassword && a.recoveryKeyFile != "" {
		return usagef("enroll: give either --with-password or --recovery-key-file")
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	a.warnPlainSlot(t, opts)
	var pw []byte
	if *withPassword {
		from := t
		if *fromTPM != "" {
			if from, err = tpm.Open(*fromTPM, a.log); err != nil {
				return err
			}
			defer from.Close()
		}
		if err := a.unlockWithTPM(v, from); err != nil {
			return err
		}
		a.repair(v)
		pw, err = newPassword(*newFile, "Password for the new slot")
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
	slot, err := v.AddTPMSlot(vault.FromTPM(t), pw, opts, *sf.label, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Enrolled TPM slot %s for this machine.\n", slot.ID)
	a.reportLimit(slot)
	return nil
}

func cmdRevoke(a *app, args []string) error {
	fs := a.flagSet("revoke")
	force := fs.Bool("force", false, "allow removing the recovery slot (a lost TPM or password then loses the vault)")
	withRecovery := fs.Bool("with-recovery", false, "authorise with the recovery key (prompted) instead of this machine's password")
	pos, err := a.parse(fs, args, 2, 2)
	if err != nil {
		return err
	}
	v, err := a.loadVault(pos[0])
	if err != nil {
		return err
	}
	id := pos[1]
	if _, ok := v.Header.Slot(id); !ok {
		return fmt.Errorf("no slot %q in this vault (see `sealfs slots %s`)", id, pos[0])
	}
	if err := a.unlock(v, *withRecovery); err != nil {
		return err
	}
	removed, err := v.RemoveSlot(id, *force)
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
