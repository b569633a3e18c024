package vault

import (
	"errors"
	"fmt"
	"slices"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// ErrOtherMachine: the vault has TPM slots, but none sealed under this TPM.
var ErrOtherMachine = tpm.ErrWrongTPM

// UnlockPassword opens the vault through this TPM's slot. Only slots whose
// stored SRK Name equals the TPM's are tried, so no authValue is ever sent to
// a TPM that cannot hold the slot (and no guess is counted against it). A
// failed unlock writes nothing. The password is not retained; the caller
// still owns (and wipes) it.
//
// With several slots for this TPM, the first refusal of the password ends
// the attempt (each try is a dictionary-attack strike, or one of an
// attempt-limited slot's tries); pick another slot with UnlockPasswordSlot.
func (v *Vault) UnlockPassword(s Sealer, password []byte) error {
	return v.UnlockPasswordSlot(s, password, "")
}

// UnlockPasswordSlot is UnlockPassword restricted to slot id ("" = any).
func (v *Vault) UnlockPasswordSlot(s Sealer, password []byte, id string) error {
	if len(v.TPMSlots(nil)) == 0 {
		return ErrNoTPMSlot
	}
	srk, err := s.SRKName()
	if err != nil {
		return fmt.Errorf("reading the TPM's storage root key: %w", err)
	}
	slots := v.TPMSlots(srk)
	if len(slots) == 0 {
		return ErrOtherMachine
	}
	if id != "" {
		slots = slices.DeleteFunc(slots, func(s *crypto.Slot) bool { return s.ID != id })
		if len(slots) == 0 {
			return fmt.Errorf("no TPM slot %q for this TPM in the vault (see `sealfs slots`)", id)
		}
	}
	var firstErr error
	for _, slot := range slots {
		err := v.unlockSlot(s, slot, password)
		if err == nil {
			return nil
		}
		if firstErr == nil {
			firstErr = err
		}
		// Only a refusal that cost no try makes the next slot worth one: a
		// wrong password would just cost another strike there.
		if !freeRefusal(err) {
			return err
		}
	}
	return firstErr
}

// freeRefusal reports whether the TPM refused a slot before the password
// was tried: changed PCRs, an attempt-limited slot already used up, or one
// whose NV index is gone.
func freeRefusal(err error) bool {
	switch {
	case errors.Is(err, tpm.ErrWrongPassword):
		return false
	case errors.Is(err, tpm.ErrPCRMismatch), errors.Is(err, tpm.ErrTriesExhausted), errors.Is(err, tpm.ErrSlotGone):
		return true
	}
	return false
}

func (v *Vault) unlockSlot(s Sealer, slot *crypto.Slot, password []byte) error {
	auth, err := crypto.DeriveAuthValue(password, slot.KDF)
	if err != nil {
		return fmt.Errorf("slot %s: %w", slot.ID, err)
	}
	defer clear(auth)
	secret, err := s.Unseal(slot.TPM, auth)
	if err != nil {
		// The TPM's errors are complete user messages (issue 3 §3: "wrong
		// password (N tries left…)", issue 7: "3 of 10 tries left…"); a
		// slot id prefix would only blur them.
		v.log.Debug("unlock failed", "slot", slot.ID, "err", err)
		return err
	}
	m, err := crypto.MasterKeyFromBytes(secret)
	clear(secret)
	if err != nil {
		return fmt.Errorf("slot %s: %w", slot.ID, err)
	}
	if err := v.setKey(m, slot.ID); err != nil {
		return err
	}
	v.log.Debug("vault unlocked", "slot", slot.ID)
	return nil
}

// UnlockRecovery opens the vault with the recovery key.
func (v *Vault) UnlockRecovery(r crypto.RecoveryKey) error {
	slot, ok := v.RecoverySlot()
	if !ok {
		return errors.New("this vault has no recovery slot (it was revoked)")
	}
	m, err := crypto.OpenRecoverySlot(slot, r, v.Header.VaultID)
	if err != nil {
		return err
	}
	if err := v.setKey(m, slot.ID); err != nil {
		return err
	}
	v.log.Debug("vault unlocked", "slot", slot.ID)
	return nil
}

// UnlockKey adopts a master key handed over by another process (the mount
// daemon receives it from the CLI over a pipe). It is accepted only if it
// authenticates the header.
func (v *Vault) UnlockKey(m *crypto.MasterKey) error { return v.setKey(m, "") }
