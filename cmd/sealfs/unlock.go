package main

import (
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
	// A slot changed since this machine used it is refused before the TPM
	// is even opened.
	if err := v.CheckPins(a.slot); err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	return a.unlockWithTPM(v, t)
}

func (a *app) unlockWithTPM(v *vault.Vault, t *tpm.TPM) error {
	// Refuse early, before asking for a password that cannot be used here:
	// no slot for this TPM, or one changed since this machine last used it.
	if err := v.CheckPasswordSlots(vault.FromTPM(t), a.slot); err != nil {
		return err
	}
	pw, err := a.password("Password for "+v.Dir, false)
	if err != nil {
		return err
	}
	defer clear(pw)
	if err := v.UnlockPasswordSlot(vault.FromTPM(t), pw, a.slot); err != nil {
		return a.explainUnlock(v, err)
	}
	return nil
}
