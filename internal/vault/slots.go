package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// CreateOptions configure a new vault.
type CreateOptions struct {
	Seal  SealOptions
	Label string // informational label of the TPM slot, e.g. the host name
	Now   time.Time
}

// Create makes a new vault in dir (created if missing) with one TPM slot
// behind password and one recovery slot. It returns the vault unlocked and
// the recovery key, which the caller shows to the user exactly once.
func Create(dir string, log *slog.Logger, s Sealer, password []byte, opts CreateOptions) (_ *Vault, _ crypto.RecoveryKey, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, crypto.RecoveryKey{}, fmt.Errorf("creating %s: %w", dir, err)
	}
	// A failed init leaves no trace: not even a directory it made. Every
	// error return below passes here; AddTPMSlot saves nothing on failure,
	// so the directory then holds no header.
	if errors.Is(statErr, fs.ErrNotExist) {
		defer func() {
			if err != nil {
				os.Remove(dir)
			}
		}()
	}
	if _, err := os.Lstat(filepath.Join(dir, crypto.HeaderFileName)); !errors.Is(err, fs.ErrNotExist) {
		return nil, crypto.RecoveryKey{}, fmt.Errorf("%s already holds a sealfs vault (%s)", dir, crypto.HeaderFileName)
	}
	h, err := crypto.NewHeader(opts.Now)
	if err != nil {
		return nil, crypto.RecoveryKey{}, err
	}
	m, err := crypto.NewMasterKey()
	if err != nil {
		return nil, crypto.RecoveryKey{}, err
	}
	k, err := crypto.DeriveKeys(m)
	if err != nil {
		m.Wipe()
		return nil, crypto.RecoveryKey{}, err
	}
	anchor, err := filepath.Abs(dir)
	if err != nil {
		m.Wipe()
		k.Wipe()
		return nil, crypto.RecoveryKey{}, err
	}
	v := &Vault{Dir: dir, Header: h, log: log, anchor: anchor, master: m, keys: k}
	warnUnlocked(log, m)
	v.pins, v.pinsErr = DefaultPinStore()
	defer func() {
		if err != nil {
			v.Wipe()
		}
	}()
	rk, err := crypto.NewRecoveryKey()
	if err != nil {
		return nil, crypto.RecoveryKey{}, err
	}
	rs, err := crypto.NewRecoverySlot(m, rk, h.VaultID, crypto.NewSlotID("recovery"))
	if err != nil {
		clear(rk[:])
		return nil, crypto.RecoveryKey{}, err
	}
	rs.Created = opts.Now.UTC()
	h.Slots = append(h.Slots, *rs)
	if _, err := v.AddTPMSlot(s, password, opts.Seal, opts.Label, false); err != nil {
		clear(rk[:])
		return nil, crypto.RecoveryKey{}, err
	}
	return v, rk, nil
}

// AddTPMSlot seals the master key for the TPM s behind password and saves
// the header. With replace, the TPM's existing slots (same SRK Name) are
// dropped in the same atomic update: `sealfs recover` uses that, because a
// forgotten password's slot is useless and a locked-out one is a liability.
// Dropped attempt-limited slots have their NV index freed once the header
// no longer refers to them.
func (v *Vault) AddTPMSlot(s Sealer, password []byte, opts SealOptions, label string, replace bool) (*crypto.Slot, error) {
	if !v.Unlocked() {
		return nil, ErrLocked
	}
	kdf, err := newKDFParams()
	if err != nil {
		return nil, err
	}
	auth, err := crypto.DeriveAuthValue(password, kdf)
	if err != nil {
		return nil, err
	}
	defer clear(auth)
	blob, err := s.Seal(v.master.Bytes(), auth, opts)
	if err != nil {
		return nil, fmt.Errorf("sealing the key in the TPM: %w", err)
	}
	slot := crypto.Slot{
		ID: crypto.NewSlotID("tpm"), Type: crypto.SlotTPM, Created: time.Now().UTC(),
		Label: label, KDF: kdf, TPM: blob,
	}
	old, oldRemoved := v.Header.Slots, v.Header.Removed
	v.Header.Slots = slices.Clone(old)
	v.Header.Removed = slices.Clone(oldRemoved)
	var dropped []crypto.Slot
	if replace {
		for _, o := range old {
			if o.Type == crypto.SlotTPM && string(o.TPM.SRKName) == string(blob.SRKName) {
				dropped = append(dropped, o)
				v.Header.RemoveSlot(o.ID, slot.Created)
			}
		}
	}
	// Pinned before the header names it: a crash after the save must not
	// leave this machine without the pin.
	if err := v.pinBeforeSave(&slot); err != nil {
		v.Header.Slots, v.Header.Removed = old, oldRemoved
		v.release(s, slot.ID, blob, "the new slot, which was not saved")
		return nil, err
	}
	v.Header.Slots = append(v.Header.Slots, slot)
	if err := v.Save(); err != nil {
		v.Header.Slots, v.Header.Removed = old, oldRemoved
		v.release(s, slot.ID, blob, "the new slot, which was not saved")
		return nil, err
	}
	v.pinAfterSave(&slot)
	var ids []string
	for _, d := range dropped {
		ids = append(ids, d.ID)
		v.release(s, d.ID, d.TPM, "the replaced slot")
	}
	v.unpin(ids...)
	saved, _ := v.Header.Slot(slot.ID)
	return saved, nil
}

// PasswdOptions tune ChangePassword.
type PasswdOptions struct {
	// SlotID picks the slot when this TPM holds several ("" = the first).
	SlotID string
	// MaxTries, when not nil, sets the slot's attempt limit: N > 0 makes
	// it attempt-limited with N tries, 0 makes it a plain slot. nil keeps
	// the slot's own.
	MaxTries *uint32
}

// ChangePassword gives this TPM's slot newPassword (and, with
// opts.MaxTries, a new attempt limit). The master key stays the same and
// nothing is re-encrypted; the vault ends up unlocked.
//
// The slot is always re-sealed: a new object (and, if limited, a new NV
// index) under the same slot id (see reseal for the order of the steps).
// No object sealfs makes can have its authValue changed (tpm.Seal), and an
// attempt-limited slot's password is its NV index's authValue, fixed when
// the index is defined. An attempt-limited slot's old index is deleted, so
// copies of the old header die with it; a plain slot's old object cannot
// be revoked by any TPM command (docs/threat-model.md).
func (v *Vault) ChangePassword(s Sealer, oldPassword, newPassword []byte, opts PasswdOptions) error {
	if opts.MaxTries != nil && *opts.MaxTries > tpm.MaxTriesLimit {
		return fmt.Errorf("max tries must be 0..%d, got %d", tpm.MaxTriesLimit, *opts.MaxTries)
	}
	if err := v.UnlockPasswordSlot(s, oldPassword, opts.SlotID); err != nil {
		return err
	}
	slot, ok := v.Header.Slot(v.slotID)
	if !ok {
		return fmt.Errorf("slot %s vanished from the header", v.slotID)
	}
	kdf, err := newKDFParams()
	if err != nil {
		return err
	}
	newAuth, err := crypto.DeriveAuthValue(newPassword, kdf)
	if err != nil {
		return err
	}
	defer clear(newAuth)
	maxTries := slot.TPM.MaxTries
	if opts.MaxTries != nil {
		maxTries = *opts.MaxTries
	}
	return v.reseal(s, slot, kdf, newAuth, maxTries)
}

// reseal replaces slot's sealed object with a new one behind newAuth,
// attempt-limited when maxTries > 0, bound to the same PCRs (whose values
// just satisfied the old policy). The steps come in the one order that
// never leaves the vault without a working slot (issue 7):
//
//  1. seal the new object (and define its NV index, if limited), and add
//     it to this machine's pin of the slot (trust.go);
//  2. save the header with the new slot in place of the old, atomically,
//     and drop the old state from the pin;
//  3. only then free the old slot's NV index.
//
// A crash before 2 leaves the old header and an orphan new NV index; a
// crash between 2 and 3, the new header and an orphan old index. Either way
// the worst case is an NV index that no current header refers to (an old
// copy of the header would still open it with the old password, until its
// tries run out), never a vault that the password cannot open.
func (v *Vault) reseal(s Sealer, slot *crypto.Slot, kdf *crypto.KDFParams, newAuth []byte, maxTries uint32) error {
	blob, err := s.Seal(v.master.Bytes(), newAuth, SealOptions{PCRs: slot.TPM.PCRs, MaxTries: maxTries})
	if err != nil {
		return fmt.Errorf("sealing the key in the TPM: %w", err)
	}
	oldKDF, oldBlob, oldRev := slot.KDF, slot.TPM, slot.Rev
	// A higher rev wins when a conflict copy of the header holding the old
	// state is merged (crypto.MergeHeaders).
	slot.KDF, slot.TPM, slot.Rev = kdf, blob, slot.Rev+1
	if err := v.pinBeforeSave(slot); err != nil {
		slot.KDF, slot.TPM, slot.Rev = oldKDF, oldBlob, oldRev
		v.release(s, slot.ID, blob, "the new slot, which was not saved")
		return err
	}
	if err := v.Save(); err != nil {
		slot.KDF, slot.TPM, slot.Rev = oldKDF, oldBlob, oldRev
		v.release(s, slot.ID, blob, "the new slot, which was not saved")
		return err
	}
	v.pinAfterSave(slot)
	v.release(s, slot.ID, oldBlob, "the old slot")
	return nil
}

// release frees the TPM side of a blob that the saved header no longer
// holds. A failure leaves the vault intact, so it is logged, not returned:
// the index only takes NV space (and, with an old copy of the header,
// still opens with the old password until its tries run out).
func (v *Vault) release(s Sealer, id string, b *crypto.TPMBlob, what string) {
	if !Limited(b) {
		return
	}
	if err := s.Delete(b); err != nil {
		v.log.Warn("could not free the TPM NV index of "+what+"; the vault is fine, "+
			"but the index stays defined until removed (e.g. `tpm2_nvundefine`)",
			"slot", id, "nv_index", fmt.Sprintf("%#x", b.NVIndex), "err", err)
	}
}

// ReleaseSlot frees what slot, already removed from the header
// (RemoveSlot), holds inside the TPM s: the NV index of an attempt-limited
// slot, so that no old copy of the header can open it any more. Plain slots
// hold nothing in the TPM. ErrOtherMachine: s is not the slot's TPM.
func ReleaseSlot(s Sealer, slot *crypto.Slot) error {
	if slot.Type != crypto.SlotTPM || !Limited(slot.TPM) {
		return nil
	}
	srk, err := s.SRKName()
	if err != nil {
		return fmt.Errorf("reading the TPM's storage root key: %w", err)
	}
	if string(srk) != string(slot.TPM.SRKName) {
		return ErrOtherMachine
	}
	return s.Delete(slot.TPM)
}

// RemoveSlot deletes slot id from the header and returns it. The last slot
// can never be removed; the recovery slot only with force (and only while a
// TPM slot remains). An attempt-limited slot's NV index stays in its TPM
// until ReleaseSlot: the header is saved first, so a failure in between
// leaves an orphan index, never a header naming a deleted one.
func (v *Vault) RemoveSlot(id string, force bool) (*crypto.Slot, error) {
	if !v.Unlocked() {
		return nil, ErrLocked
	}
	slot, ok := v.Header.Slot(id)
	if !ok {
		return nil, fmt.Errorf("no slot %q in this vault (see `sealfs slots`)", id)
	}
	if len(v.Header.Slots) == 1 {
		return nil, ErrLastSlot
	}
	if slot.Type == crypto.SlotRecovery && !force {
		return nil, ErrRecoverySlot
	}
	removed := *slot
	old, oldRemoved := v.Header.Slots, v.Header.Removed
	v.Header.Slots, v.Header.Removed = slices.Clone(old), slices.Clone(oldRemoved)
	// The tombstone keeps a conflict copy of the header from bringing the
	// slot back when it is merged.
	v.Header.RemoveSlot(id, time.Now())
	if err := v.Save(); err != nil {
		v.Header.Slots, v.Header.Removed = old, oldRemoved
		return nil, err
	}
	if removed.Type == crypto.SlotTPM {
		v.unpin(id)
	}
	return &removed, nil
}
