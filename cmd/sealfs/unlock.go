package main

import (
	"errors"
	"fmt"

	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

// loadVault reads CIPHERDIR's header; the Vault is wiped when the command ends.
func (a *app) loadVault(dir string) (*vault.Vault, error) {
	v, err := vault.Load(dir, a.log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, v.Wipe)
	return v, nil
}

// unlock opens v with the recovery key when one is supplied (or
// useRecovery), else with this TPM's slot and the password.
func (a *app) unlock(v *vault.Vault, useRecovery bool) error {
	if useRecovery || a.recoveryKeyFile != "" {
		rk, err := a.recoveryKey()
		if err != nil {
			return err
		}
		defer clear(rk[:])
		return v.UnlockRecovery(rk)
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	return a.unlockWithTPM(v, t)
}

func (a *app) unlockWithTPM(v *vault.Vault, t *tpm.TPM) error {
	// Refuse early, before asking for a password that cannot be used here.
	srk, err := t.SRKName()
	if err != nil {
		return err
	}
	if len(v.TPMSlots(nil)) == 0 {
		return vault.ErrNoTPMSlot
	}
	if len(v.TPMSlots(srk)) == 0 {
		return vault.ErrOtherMachine
	}
	pw, err := a.password("Password for "+v.Dir, false)
	if err != nil {
		return err
	}
	defer clear(pw)
	err = v.UnlockPasswordSlot(vault.FromTPM(t), pw, a.slot)
	if errors.Is(err, tpm.ErrWrongPassword) {
		// The TPM just counted the failure; tell how many remain.
		var ae *tpm.AuthError
		if errors.As(err, &ae) && ae.TriesLeft < 0 {
			return fmt.Errorf("%w; see `sealfs status %s`", err, v.Dir)
		}
	}
	return err
}
