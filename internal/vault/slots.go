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
func Create(dir string, log *slog.Logger, s Sealer, password []byte, opts CreateOptions) (*Vault, crypto.RecoveryKey, error) {
	var rk crypto.RecoveryKey
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rk, fmt.Errorf("creating %s: %w", dir, err)
	}
	// A failed init leaves no trace: not even a directory it made.
	created := errors.Is(statErr, fs.ErrNotExist)
	cleanup := func() {
		if created {
			os.Remove(dir)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, crypto.HeaderFileName)); !errors.Is(err, fs.ErrNotExist) {
		return nil, rk, fmt.Errorf("%s already holds a sealfs vault (%s)", dir, crypto.HeaderFileName)
	}
	h, err := crypto.NewHeader(opts.Now)
	if err != nil {
		return nil, rk, err
	}
	m, err := crypto.NewMasterKey()
	if err != nil {
		return nil, rk, err
	}
	k, err := crypto.DeriveKeys(m)
	if err != nil {
		m.Wipe()
		return nil, rk, err
	}
	v := &Vault{Dir: dir, Header: h, log: log, master: m, keys: k}
	if rk, err = crypto.NewRecoveryKey(); err != nil {
		v.Wipe()
		return nil, rk, err
	}
	rs, err := crypto.NewRecoverySlot(m, rk, h.VaultID, crypto.NewSlotID("recovery"))
	if err != nil {
		v.Wipe()
		return nil, rk, err
	}
	rs.Created = opts.Now.UTC()
	h.Slots = append(h.Slots, *rs)
	if _, err := v.AddTPMSlot(s, password, opts.Seal, opts.Label, false); err != nil {
		// AddTPMSlot saved nothing on failure; the directory holds no header.
		v.Wipe()
		cleanup()
		return nil, crypto.RecoveryKey{}, err
	}
	return v, rk, nil
}

// AddTPMSlot seals the master key for the TPM s behind password and saves
// the header. With replace, the TPM's existing slots (same SRK Name) are
// dropped in the same atomic update: `sealfs recover` uses that, because a
// forgotten password's slot is useless and a locked-out one is a liability.
func (v *Vault) AddTPMSlot(s Sealer, password []byte, opts SealOptions, label string, replace bool) (*crypto.Slot, error) {
	if !v.Unlocked() {
		return nil, ErrLocked
	}
	kdf, err := crypto.NewKDFParams()
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
	old := v.Header.Slots
	next := slices.Clone(old)
	if replace {
		next = slices.DeleteFunc(next, func(o crypto.Slot) bool {
			return o.Type == crypto.SlotTPM && string(o.TPM.SRKName) == string(blob.SRKName)
		})
	}
	v.Header.Slots = append(next, slot)
	if err := v.Save(); err != nil {
		v.Header.Slots = old
		return nil, err
	}
	return &slot, nil
}

// ChangePassword re-keys this TPM's slot from oldPassword to newPassword
// with ObjectChangeAuth: the sealed key stays, nothing is re-encrypted. The
// vault ends up unlocked. The old blob would still open with the old
// password, so it is replaced in one atomic header update.
// slotID picks the slot when this TPM holds several ("" = the first).
func (v *Vault) ChangePassword(s Sealer, oldPassword, newPassword []byte, slotID string) error {
	if err := v.UnlockPasswordSlot(s, oldPassword, slotID); err != nil {
		return err
	}
	slot, ok := v.Header.Slot(v.slotID)
	if !ok {
		return fmt.Errorf("slot %s vanished from the header", v.slotID)
	}
	oldAuth, err := crypto.DeriveAuthValue(oldPassword, slot.KDF)
	if err != nil {
		return err
	}
	defer clear(oldAuth)
	kdf, err := crypto.NewKDFParams()
	if err != nil {
		return err
	}
	newAuth, err := crypto.DeriveAuthValue(newPassword, kdf)
	if err != nil {
		return err
	}
	defer clear(newAuth)
	blob, err := s.ChangeAuth(slot.TPM, oldAuth, newAuth)
	if err != nil {
		return fmt.Errorf("changing the slot's password in the TPM: %w", err)
	}
	oldKDF, oldBlob := slot.KDF, slot.TPM
	slot.KDF, slot.TPM = kdf, blob
	if err := v.Save(); err != nil {
		slot.KDF, slot.TPM = oldKDF, oldBlob
		return err
	}
	return nil
}

// RemoveSlot deletes slot id. The last slot can never be removed; the
// recovery slot only with force (and only while a TPM slot remains).
func (v *Vault) RemoveSlot(id string, force bool) error {
	if !v.Unlocked() {
		return ErrLocked
	}
	slot, ok := v.Header.Slot(id)
	if !ok {
		return fmt.Errorf("no slot %q in this vault (see `sealfs slots`)", id)
	}
	if len(v.Header.Slots) == 1 {
		return ErrLastSlot
	}
	if slot.Type == crypto.SlotRecovery && !force {
		return ErrRecoverySlot
	}
	old := v.Header.Slots
	v.Header.Slots = slices.DeleteFunc(slices.Clone(old), func(s crypto.Slot) bool { return s.ID == id })
	if err := v.Save(); err != nil {
		v.Header.Slots = old
		return err
	}
	return nil
}
