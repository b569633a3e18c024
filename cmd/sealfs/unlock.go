package main

import (
	"fmt"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/vault"
	"github.com/sealfs/sealfs/tpm"
)

// loadVault reads CIPHERDIR's header; the Vault is wiped when the command ends.
func (a *app) loadVault(dir string) (*vault.Vault, error) {
	v, err := vault.Load(dir, a.log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, v.Wipe, func() {
		if v.FormatUpgraded() {
			fmt.Fprintf(a.stderr, "note: the vault header is now format %d (two copies, so that one damaged byte cannot lock you out); "+
				"sealfs versions from before it cannot open this vault: upgrade sealfs on your other devices\n", crypto.FormatVersion)
		}
	})
	return v, nil
}

// unlock opens v with the recovery key when one is supplied (or
// useRecovery), else with this TPM's slot and the password. Then it
// repairs the header if it needs it (a damaged copy, sync conflict copies
// to merge): that needs the key, so every command that unlocks does it.
func (a *app) unlock(v *vault.Vault, useRecovery bool) error {
	if err := a.unlockOnly(v, useRecovery); err != nil {
		return a.explainUnlock(v, err)
	}
	a.repair(v)
	return nil
}

// repair rewrites a header that an unlock found damaged or in need of a
// merge, and says what it did. A failure leaves the vault usable (the
// header it read still opens it), so it is a warning.
func (a *app) repair(v *vault.Vault) {
	done, err := v.Repair()
	if err != nil {
		fmt.Fprintf(a.stderr, "warning: could not repair the vault header (%v); the next unlock tries again\n", err)
		return
	}
	for _, d := range done {
		fmt.Fprintf(a.stderr, "note: vault header repaired: %s\n", d)
	}
}

func (a *app) unlockOnly(v *vault.Vault, useRecovery bool) error {
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
	return v.UnlockPasswordSlot(vault.FromTPM(t), pw, a.slot)
}
