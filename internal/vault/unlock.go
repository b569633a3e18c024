package vault

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// ErrOtherMachine: the vault has TPM slots, but none sealed under this TPM.
var ErrOtherMachine = tpm.ErrWrongTPM

// UnlockPassword opens the vault through this TPM's slot. Only slots whose
// stored SRK Name equals the TPM's, and that this machine's pins accept,
// are tried (pins.go), so no authValue is ever sent to a TPM that cannot
// hold the slot, or for a slot that someone changed. A failed unlock writes
// nothing. The password is not retained; the caller still owns (and wipes)
// it.
//
// With several slots for this TPM, the first refusal of the password ends
// the attempt (each try is a dictionary-attack strike, or one of an
// attempt-limited slot's tries); pick another slot with UnlockPasswordSlot.
func (v *Vault) UnlockPassword(s Sealer, password []byte) error {
	return v.UnlockPasswordSlot(s, password, "")
}

// UnlockPasswordSlot is UnlockPassword restricted to slot id ("" = any).
func (v *Vault) UnlockPasswordSlot(s Sealer, password []byte, id string) error {
	cands, err := v.passwordSlots(s, id, true)
	if err != nil {
		return err
	}
	var firstErr error
	for _, c := range cands {
		err := v.unlockSlot(s, c, password)
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
// no TPM slot, none for this TPM (or none with that id), or none that this
// machine's pins accept (ErrPinRefused). The CLI calls it before asking for
// the password.
func (v *Vault) CheckPasswordSlots(s Sealer, id string) error {
	_, err := v.passwordSlots(s, id, false)
	return err
}

// candidate is a TPM slot a password may be tried on, and the copy of the
// header it was found in.
type candidate struct {
	slot  *crypto.Slot
	src   source
	since time.Time // when this machine first pinned it
}

// passwordSlots returns the slots of this TPM (only id, unless "") that a
// password may be tried on, in the order to try them.
//
// With a pin record for this directory and TPM (pins.go): the header's
// vault ID must be the recorded one; every slot of this TPM in any whole
// copy of the header (sealfs.vault's two, the conflict copies) that this
// machine pinned, in the order it first pinned them. Slots it did not pin
// are never tried; with warn, skipping them is logged.
//
// Without a record (first use here): the slots of this TPM in the primary
// copy, in header order, minus those an old sealfs's record refuses.
func (v *Vault) passwordSlots(s Sealer, id string, warn bool) ([]candidate, error) {
	if len(v.TPMSlots(nil)) == 0 && len(v.conflicts) == 0 {
		return nil, ErrNoTPMSlot
	}
	srk, err := s.SRKName()
	if err != nil {
		return nil, fmt.Errorf("reading the TPM's storage root key: %w", err)
	}
	rec, err := v.pinRecord(srk)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return v.firstUseSlots(srk, id)
	}
	if rec.VaultID != hex.EncodeToString(v.Header.VaultID) {
		return nil, &VaultIDChangedError{Dir: v.Dir}
	}
	var trusted []candidate
	var changed, unknown []string
	seen := map[string]bool{}
	for _, src := range v.sources() {
		for _, slot := range tpmSlots(src.header(), srk) {
			if id != "" && slot.ID != id {
				continue
			}
			d := pinDigest(slot)
			if seen[d] {
				continue
			}
			seen[d] = true
			pin := rec.pin(slot)
			switch {
			case pin != nil:
				trusted = append(trusted, candidate{slot: slot, src: src, since: pin.Since})
			case src.conflict != nil:
				// Conflict copies are searched for pinned slots only.
			case rec.hasID(slot.ID):
				changed = append(changed, slot.ID)
			default:
				unknown = append(unknown, slot.ID)
			}
		}
	}
	slices.SortStableFunc(trusted, func(a, b candidate) int { return a.since.Compare(b.since) })
	// A pinned slot that is missing or changed, beside others that are
	// fine: the password may be meant for it, and trying it on another
	// slot would cost a try there. So nothing is tried unless the user
	// names the slot (--slot).
	if id == "" && len(trusted) > 0 {
		var others []string
		for _, c := range trusted {
			others = append(others, c.slot.ID)
		}
		for _, p := range rec.Slots {
			if slices.Contains(others, p.ID) {
				continue
			}
			if slices.Contains(changed, p.ID) {
				return nil, &SlotChangedError{SlotID: p.ID, Others: others}
			}
			return nil, &SlotMissingError{SlotID: p.ID, Others: others}
		}
	}
	var refused error
	switch {
	case len(changed) > 0:
		refused = &SlotChangedError{SlotID: changed[0]}
	case len(unknown) > 0:
		refused = &UnknownSlotError{SlotIDs: unknown}
	}
	if len(trusted) > 0 {
		if warn && len(unknown) > 0 {
			v.log.Warn("not trying TPM slots that this machine did not make or unlock",
				"slots", unknown, "err", refused)
		}
		return trusted, nil
	}
	if refused != nil {
		return nil, refused
	}
	return nil, v.noSlotError(srk, id)
}

// firstUseSlots are the slots tried where this machine has no record yet.
func (v *Vault) firstUseSlots(srk []byte, id string) ([]candidate, error) {
	primary := v.sources()[0]
	var out []candidate
	var refused error
	for _, slot := range tpmSlots(primary.header(), srk) {
		if id != "" && slot.ID != id {
			continue
		}
		if v.pins != nil {
			if err := v.pins.legacyCheck(v.Header.VaultID, slot); err != nil {
				if refused == nil {
					refused = err
				}
				continue
			}
		}
		out = append(out, candidate{slot: slot, src: primary})
	}
	switch {
	case len(out) > 0:
		return out, nil
	case refused != nil:
		return nil, refused
	}
	return nil, v.noSlotError(srk, id)
}

func (v *Vault) noSlotError(srk []byte, id string) error {
	switch {
	case len(v.TPMSlots(nil)) == 0:
		return ErrNoTPMSlot
	case len(v.TPMSlots(srk)) == 0 || id == "":
		return ErrOtherMachine
	}
	return fmt.Errorf("no TPM slot %q for this TPM in the vault (see `sealfs slots`)", id)
}

// pinRecord returns this machine's record for this directory and TPM, nil
// on first use (or when the user has no state directory).
func (v *Vault) pinRecord(srk []byte) (*pinRecord, error) {
	if v.pins == nil {
		return nil, nil
	}
	pf, err := v.pins.load()
	if err != nil {
		return nil, err
	}
	return pf.record(v.anchor, srk), nil
}

// CheckPins refuses, before any TPM is opened, when this machine's records
// for this directory refuse every TPM slot a password could be tried on
// (only id, unless ""): the vault ID changed, or every slot of a recorded
// TPM differs from its pins. Which TPM is this machine's is not known yet:
// CheckPasswordSlots, with the TPM, says more.
func (v *Vault) CheckPins(id string) error {
	if len(v.TPMSlots(nil)) == 0 && len(v.conflicts) == 0 {
		return ErrNoTPMSlot
	}
	if v.pins == nil {
		return nil
	}
	pf, err := v.pins.load()
	if err != nil {
		return err
	}
	recs := pf.records(v.anchor, nil)
	var refused error
	for _, r := range recs {
		if r.VaultID != hex.EncodeToString(v.Header.VaultID) {
			refused = cmpOr(refused, &VaultIDChangedError{Dir: v.Dir})
			continue
		}
		srk, _ := hex.DecodeString(r.SRKName)
		found, ok := false, false
		for _, src := range v.sources() {
			for _, slot := range tpmSlots(src.header(), srk) {
				if id != "" && slot.ID != id {
					continue
				}
				if src.conflict == nil {
					found = true
				}
				if r.pin(slot) != nil {
					ok = true
				} else if src.conflict == nil {
					if r.hasID(slot.ID) {
						refused = cmpOr(refused, &SlotChangedError{SlotID: slot.ID})
					} else {
						refused = cmpOr(refused, &UnknownSlotError{SlotIDs: []string{slot.ID}})
					}
				}
			}
		}
		if ok || !found {
			return nil // this TPM has a slot to try, or none here at all
		}
	}
	return refused
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

const noPinWarning = "cannot record this vault's TPM slot on this machine, so a change to it in the cipher folder " +
	"is noticed only as a wrong password"

// pinUnlocked pins a slot that just opened (its header now authenticated),
// or notes that it was used: trust on first use, and the order in which
// slots are tried. A failure only loses the protection, so it is logged.
func (v *Vault) pinUnlocked(slot *crypto.Slot) {
	if v.pins == nil {
		v.log.Warn(noPinWarning, "slot", slot.ID, "err", v.pinsErr)
		return
	}
	if err := v.pins.recordPin(v.anchor, v.Header.VaultID, slot, pinAdd, time.Now()); err != nil {
		v.log.Warn(noPinWarning, "slot", slot.ID, "err", err)
	}
}

// pinBeforeSave adds the state of slot, new or changed by this machine, to
// its pins before the header holding it is saved, so that neither the old
// nor the new header is refused if the process dies in between. When the
// record cannot be written and the slot is pinned already, the change must
// not go ahead: the saved slot would be refused at its next unlock.
func (v *Vault) pinBeforeSave(slot *crypto.Slot) error {
	if v.pins == nil {
		v.log.Warn(noPinWarning, "slot", slot.ID, "err", v.pinsErr)
		return nil
	}
	err := v.pins.recordPin(v.anchor, v.Header.VaultID, slot, pinAdd, time.Now())
	if err == nil {
		return nil
	}
	if rec, perr := v.pinRecord(slot.TPM.SRKName); perr == nil && rec != nil && rec.hasID(slot.ID) {
		return fmt.Errorf("cannot update this machine's record of TPM slot %s, which its next unlock would then refuse: %w", slot.ID, err)
	}
	v.log.Warn(noPinWarning, "slot", slot.ID, "err", err)
	return nil
}

// pinAfterSave makes the saved state of slot its only accepted one, so an
// old copy of the header (before a passwd) is refused from now on. On
// failure the pin still accepts the new slot (pinBeforeSave), and the old
// one too: logged.
func (v *Vault) pinAfterSave(slot *crypto.Slot) {
	if v.pins == nil {
		return
	}
	if err := v.pins.recordPin(v.anchor, v.Header.VaultID, slot, pinOnly, time.Now()); err != nil {
		v.log.Warn("cannot drop the old state of a changed TPM slot from this machine's record of it; "+
			"an old copy of the header would not be refused", "slot", slot.ID, "err", err)
	}
}

// unpin forgets removed slots, after the header without them was saved.
func (v *Vault) unpin(ids ...string) {
	if v.pins == nil {
		return
	}
	if err := v.pins.dropPins(v.anchor, ids); err != nil {
		v.log.Warn("cannot drop removed TPM slots from this machine's record; an old copy of the header "+
			"holding them would not be refused", "slots", ids, "err", err)
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

func (v *Vault) unlockSlot(s Sealer, c candidate, password []byte) error {
	slot := c.slot
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
	opened := *slot // before setKey replaces the header it points into
	if err := v.setKey(m, c.src, &opened); err != nil {
		return err
	}
	if c.src.conflict != nil {
		v.log.Info("unlocked through a sync conflict copy of the vault header; it is merged into the header", "file", c.src.conflict.name)
	}
	v.log.Debug("vault unlocked", "slot", slot.ID)
	// The header is authenticated now: pin the slot as it opened, and
	// forget pinned slots of this TPM that it no longer holds (revoked or
	// replaced on another device).
	v.pinUnlocked(&opened)
	v.prunePins(opened.TPM.SRKName)
	return nil
}

// prunePins drops this TPM's pins of slots the authenticated header no
// longer holds, so that their absence stops blocking unlocks.
func (v *Vault) prunePins(srk []byte) {
	rec, err := v.pinRecord(srk)
	if err != nil || rec == nil {
		return
	}
	var gone []string
	for _, p := range rec.Slots {
		if _, ok := v.Header.Slot(p.ID); !ok && !slices.Contains(gone, p.ID) {
			gone = append(gone, p.ID)
		}
	}
	if len(gone) > 0 {
		v.log.Info("forgetting this machine's TPM slots that the vault no longer holds", "slots", gone)
		v.unpin(gone...)
	}
}

// UnlockRecovery opens the vault with the recovery key. Every whole copy of
// the header is tried, conflict copies last (no TPM is involved, so a
// damaged or edited copy costs nothing): one damaged byte anywhere in
// sealfs.vault never locks the recovery key out.
func (v *Vault) UnlockRecovery(r crypto.RecoveryKey) error {
	var firstErr error
	tried := map[string]bool{}
	for _, src := range v.sources() {
		h := src.header()
		for i := range h.Slots {
			slot := &h.Slots[i]
			if slot.Type != crypto.SlotRecovery {
				continue
			}
			// The same slot in another copy opens to the same key, and
			// setKey already looks for a copy that authenticates it.
			key := string(h.VaultID) + string(slot.Salt) + string(slot.Nonce) + string(slot.Wrapped)
			if tried[key] {
				continue
			}
			tried[key] = true
			m, err := crypto.OpenRecoverySlot(slot, r, h.VaultID)
			if err == nil {
				opened := *slot
				if err = v.setKey(m, src, &opened); err == nil {
					v.log.Debug("vault unlocked", "slot", opened.ID)
					return nil
				}
			}
			if firstErr == nil || (errors.Is(firstErr, crypto.ErrWrongRecoveryKey) && !errors.Is(err, crypto.ErrWrongRecoveryKey)) {
				firstErr = err
			}
		}
	}
	if firstErr == nil {
		return errors.New("this vault has no recovery slot (it was revoked)")
	}
	return firstErr
}

// UnlockKey adopts a master key handed over by another process (the mount
// daemon receives it from the CLI over a pipe). It is accepted only if it
// authenticates the header.
func (v *Vault) UnlockKey(m *crypto.MasterKey) error {
	for _, src := range v.sources() {
		mk, err := crypto.MasterKeyFromBytes(m.Bytes())
		if err != nil {
			m.Wipe()
			return err
		}
		if err := v.setKey(mk, src, nil); err == nil {
			m.Wipe()
			return nil
		} else if !errors.Is(err, crypto.ErrHeaderMAC) {
			m.Wipe()
			return err
		}
	}
	m.Wipe()
	return fmt.Errorf("vault header was modified: %w", crypto.ErrHeaderMAC)
}
