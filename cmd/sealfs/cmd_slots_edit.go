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
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	v, err := a.loadVault(pos[0])
	if err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	srk, err := t.SRKName()
	if err != nil {
		return err
	}
	if len(v.TPMSlots(srk)) == 0 {
		return vault.ErrOtherMachine
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
	if err := v.ChangePassword(vault.FromTPM(t), old, pw, a.slot); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Password of slot %s changed.\n", v.UnlockedSlot())
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
	sf.maxTries = fs.Uint("max-tries", 0, "attempt-limited slot: after `N` wrong passwords only the recovery key opens the vault")
	sf.label = fs.String("label", hostname(), "label of the new TPM slot")
	return sf
}

func (sf *slotFlags) opts() vault.SealOptions {
	return vault.SealOptions{PCRs: sf.pcrs, MaxTries: uint32(*sf.maxTries)}
}

func cmdRecover(a *app, args []string) error {
	fs := a.flagSet("recover")
	sf := addSlotFlags(fs)
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	v, err := a.loadVault(pos[0])
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
	pw, err := a.password("New password for this machine", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	srk, err := t.SRKName()
	if err != nil {
		return err
	}
	var replaced []string
	for _, s := range v.TPMSlots(srk) {
		replaced = append(replaced, s.ID)
	}
	slot, err := v.AddTPMSlot(vault.FromTPM(t), pw, sf.opts(), *sf.label, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "New TPM slot %s for this machine.\n", slot.ID)
	for _, id := range replaced {
		fmt.Fprintf(a.stdout, "Replaced this machine's old slot %s.\n", id)
	}
	a.warnLockout(t)
	return nil
}

// warnLockout tells the user when the new slot cannot be used yet: the
// dictionary-attack lockout is the TPM's, not the slot's.
func (a *app) warnLockout(t *tpm.TPM) {
	info, err := t.Lockout()
	if err != nil || !info.InLockout {
		return
	}
	fmt.Fprintf(a.stderr, "note: this TPM is still locked against password guessing; the new password works once it recovers (up to %s), "+
		"or after its owner runs TPM2_DictionaryAttackLockReset. Until then mount with --recovery-key-file.\n", info.Interval)
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
	slot, err := v.AddTPMSlot(vault.FromTPM(t), pw, sf.opts(), *sf.label, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Enrolled TPM slot %s for this machine.\n", slot.ID)
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
	if err := v.RemoveSlot(id, *force); err != nil {
		if errors.Is(err, vault.ErrRecoverySlot) || errors.Is(err, vault.ErrLastSlot) {
			return err
		}
		return fmt.Errorf("revoking %s: %w", id, err)
	}
	fmt.Fprintf(a.stdout, "Slot %s removed. Copies of the old header (cloud file versions, backups) still hold it.\n", id)
	return nil
}
