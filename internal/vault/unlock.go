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
	slots, err := v.passwordSlots(s, id, true)
	if err != nil {
		return err
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

// CheckPasswordSlots reports, without a password and without spending a
// try, why UnlockPasswordSlot(s, _, id) would refuse before trying one:
// no TPM slot, none for this TPM (or none with that id), or a slot that this
// machine pinned and that was changed since (*SlotChangedError). The CLI
// calls it before asking for the password.
func (v *Vault) CheckPasswordSlots(s Sealer, id string) error {
	_, err := v.passwordSlots(s, id, false)
	return err
}

// passwordSlots returns the TPM slots a password may be tried on: those of
// this TPM (restricted to id unless ""), minus any that this machine pinned
// and that differ from the pin (trust.go). The pins are checked first, so a
// changed slot is refused without a question to the TPM; its srk_name is
// covered by the pin too. With warn, a changed slot skipped in favour of
// another is logged (the error, when nothing is left, says it anyway).
func (v *Vault) passwordSlots(s Sealer, id string, warn bool) ([]*crypto.Slot, error) {
	if len(v.TPMSlots(nil)) == 0 {
		return nil, ErrNoTPMSlot
	}
	trusted, refusedIDs, refused := v.trustedSlots(id)
	if len(trusted) == 0 && refused != nil {
		return nil, refused
	}
	srk, err := s.SRKName()
	if err != nil {
		return nil, fmt.Errorf("reading the TPM's storage root key: %w", err)
	}
	mine := slices.DeleteFunc(trusted, func(s *crypto.Slot) bool { return string(s.TPM.SRKName) != string(srk) })
	switch {
	case len(mine) > 0:
		if warn && refused != nil {
			v.log.Warn("not trying TPM slots that differ from this machine's record of them", "slots", refusedIDs, "err", refused)
		}
		return mine, nil
	case refused != nil:
		return nil, refused
	case len(v.TPMSlots(srk)) == 0:
		return nil, ErrOtherMachine
	}
	return nil, fmt.Errorf("no TPM slot %q for this TPM in the vault (see `sealfs slots`)", id)
}

// CheckPins refuses, before any TPM is opened, when every TPM slot that a
// password could be tried on (only id, unless "") differs from this
// machine's pin of it (*SlotChangedError). Which slots belong to this TPM is
// not known yet: CheckPasswordSlots, with the TPM, says more.
func (v *Vault) CheckPins(id string) error {
	if len(v.TPMSlots(nil)) == 0 {
		return ErrNoTPMSlot
	}
	if trusted, _, refused := v.trustedSlots(id); len(trusted) == 0 && refused != nil {
		return refused
	}
	return nil
}

// trustedSlots splits the TPM slots (only id, unless "") into those that
// this machine has no pin for or whose pin they match, and the ids of the
// others with the first refusal.
func (v *Vault) trustedSlots(id string) (trusted []*crypto.Slot, refusedIDs []string, refused error) {
	for _, slot := range v.TPMSlots(nil) {
		if id != "" && slot.ID != id {
			continue
		}
		if err := v.checkTrust(slot); err != nil {
			if refused == nil {
				refused = err
			}
			refusedIDs = append(refusedIDs, slot.ID)
			continue
		}
		trusted = append(trusted, slot)
	}
	return trusted, refusedIDs, refused
}

// checkTrust refuses a slot that this machine pinned with other contents.
func (v *Vault) checkTrust(slot *crypto.Slot) error {
	if v.trust == nil {
		return nil
	}
	return v.trust.check(v.Header.VaultID, slot)
}

const noPinWarning = "cannot record this vault's TPM slot on this machine, so a change to it in the cipher folder " +
	"is noticed only as a wrong password"

// pinUnlocked pins a slot that just opened (its header now authenticated)
// if this machine had no pin for it: trust on first use. A slot that has a
// pin passed checkTrust, so the pin already accepts it. A failure only
// loses the protection, so it is logged, not returned.
func (v *Vault) pinUnlocked(slot *crypto.Slot) {
	if v.trust == nil {
		v.log.Warn(noPinWarning, "slot", slot.ID, "err", v.trustErr)
		return
	}
	if err := v.trust.record(v.Header.VaultID, slot, false); err != nil {
		v.log.Warn(noPinWarning, "slot", slot.ID, "err", err)
	}
}

// pinBeforeSave adds the digest of slot, new or changed by this machine,
// to its pin before the header holding it is saved, so that neither the old
// nor the new header is refused if the process dies in between. When the
// record cannot be written and the slot is pinned already, the change must
// not go ahead: the saved slot would be refused at its next unlock.
func (v *Vault) pinBeforeSave(slot *crypto.Slot) error {
	if v.trust == nil {
		v.log.Warn(noPinWarning, "slot", slot.ID, "err", v.trustErr)
		return nil
	}
	err := v.trust.record(v.Header.VaultID, slot, false)
	if err == nil {
		return nil
	}
	if pinned, perr := v.trust.pinned(v.Header.VaultID, slot.ID); perr == nil && pinned {
		return fmt.Errorf("cannot update this machine's record of TPM slot %s, which its next unlock would then refuse: %w", slot.ID, err)
	}
	v.log.Warn(noPinWarning, "slot", slot.ID, "err", err)
	return nil
}

// pinAfterSave makes the saved slot's digest its only accepted one, so an
// old copy of the header (before a passwd) is refused from now on. On
// failure the pin still accepts the new slot (pinBeforeSave), and the old
// one too: logged.
func (v *Vault) pinAfterSave(slot *crypto.Slot) {
	if v.trust == nil {
		return
	}
	if err := v.trust.record(v.Header.VaultID, slot, true); err != nil {
		v.log.Warn("cannot drop the old state of a changed TPM slot from this machine's record of it; "+
			"an old copy of the header would not be refused", "slot", slot.ID, "err", err)
	}
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
	// The header is authenticated now: pin the slot as it opened.
	v.pinUnlocked(slot)
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
