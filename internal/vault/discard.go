package vault

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// Discard takes back a vault that Create made and nobody has used yet (its
// recovery key was never confirmed, or `sealfs init` was interrupted): the
// header goes, the TPM slots' NV indexes are freed in s, and this machine
// forgets their pins, so that a vault arriving at the same path later (by
// sync) is not refused as a changed one. The directory stays; whether Create
// made it is the caller's to know.
func (v *Vault) Discard(s Sealer) error {
	var errs []error
	if err := os.Remove(filepath.Join(v.Dir, crypto.HeaderFileName)); err != nil {
		errs = append(errs, err)
	}
	var ids []string
	for _, slot := range v.TPMSlots(nil) {
		ids = append(ids, slot.ID)
		if err := ReleaseSlot(s, slot); err != nil {
			errs = append(errs, fmt.Errorf("freeing the NV index %#x of slot %s: %w", slot.TPM.NVIndex, slot.ID, err))
		}
	}
	if v.pins != nil {
		if err := v.pins.dropPins(v.anchor, ids); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// FormerTPM reports a TPM slot of this vault that this machine made or
// unlocked at this path under a TPM other than the one whose SRK Name is
// srk, and when it last did. Such a slot is this machine's own, sealed for a
// storage root key the TPM no longer has: the TPM was cleared (firmware
// update or reset, "clear TPM" in the setup) or replaced (new motherboard).
// Without such a pin, a slot for another TPM is another machine's.
func (v *Vault) FormerTPM(srk []byte) (slotID string, lastUsed time.Time, ok bool) {
	if v.pins == nil {
		return "", time.Time{}, false
	}
	pf, err := v.pins.load()
	if err != nil {
		return "", time.Time{}, false
	}
	cur := hex.EncodeToString(srk)
	for _, r := range pf.records(v.anchor, nil) {
		if r.SRKName == cur || r.VaultID != hex.EncodeToString(v.Header.VaultID) {
			continue
		}
		for _, s := range v.TPMSlots(nil) {
			if hex.EncodeToString(s.TPM.SRKName) != r.SRKName {
				continue
			}
			if p := r.pin(s); p != nil && p.Used.After(lastUsed) {
				slotID, lastUsed, ok = s.ID, p.Used, true
			}
		}
	}
	return slotID, lastUsed, ok
}
