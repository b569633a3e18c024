// Package vault is the seam between the vault header file on disk, the
// crypto package and a TPM: it loads and atomically rewrites sealfs.vault,
// unlocks the master key through a keyslot, and edits the slot list.
//
// A Vault starts locked (only the unauthenticated slots are readable). After
// UnlockPassword or UnlockRecovery it holds the master key and derived keys in
// locked memory and may rewrite the header; Wipe locks it again.
//
// The TPM slots a machine has used are pinned in a record outside the
// cipher folder (trust.go), so that a slot changed there is refused before
// a password try is spent on it.
package vault

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
)

// Errors callers branch on. The texts are the user-facing messages of
// issue 3 §3, so the CLI prints them unchanged.
var (
	// ErrNotVault: the directory has no vault header.
	ErrNotVault = errors.New("not a sealfs vault")
	// ErrLocked: an operation needs the master key and the vault is locked.
	ErrLocked = errors.New("vault is locked")
	// ErrNoTPMSlot: the vault has no TPM slot at all (only the recovery key).
	ErrNoTPMSlot = errors.New("this vault has no TPM slot: use `sealfs recover` with your recovery key")
	// ErrHeaderChanged: another process rewrote the header between our read
	// and our write; rewriting would silently drop its change.
	ErrHeaderChanged = errors.New("the vault header changed on disk while this command ran; run it again")
	// ErrLastSlot: removing the slot would leave no way into the vault.
	ErrLastSlot = errors.New("refusing to remove the last slot: the vault could never be opened again")
	// ErrRecoverySlot: removing the recovery slot needs --force.
	ErrRecoverySlot = errors.New("refusing to remove the recovery slot: without it a lost TPM or password loses the vault; use --force if you mean it")
)

// Vault is one cipher directory's header, locked or unlocked.
type Vault struct {
	Dir    string
	Header *crypto.Header

	raw    []byte // header bytes as read or last written; MAC-checked on unlock
	log    *slog.Logger
	master *crypto.MasterKey
	keys   *crypto.Keys
	slotID string // slot that unlocked the vault

	// trust pins this machine's TPM slots (trust.go); nil, with trustErr
	// saying why, when the user has no state directory.
	trust    *TrustStore
	trustErr error
}

// Load reads and parses the header of the vault in dir. The header is not
// authenticated until the vault is unlocked.
func Load(dir string, log *slog.Logger) (*Vault, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := filepath.Join(dir, crypto.HeaderFileName)
	raw, err := readHeaderFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s in %s)", ErrNotVault, crypto.HeaderFileName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading vault header: %w", err)
	}
	h, err := crypto.ParseHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v := &Vault{Dir: dir, Header: h, raw: raw, log: log}
	v.trust, v.trustErr = DefaultTrustStore()
	return v, nil
}

// Unlocked reports whether the vault holds its master key.
func (v *Vault) Unlocked() bool { return v.keys != nil }

// MasterKey returns the unlocked master key (nil when locked). It stays
// owned by the Vault: Wipe clears it.
func (v *Vault) MasterKey() *crypto.MasterKey { return v.master }

// Keys returns the derived keys (nil when locked), owned by the Vault.
func (v *Vault) Keys() *crypto.Keys { return v.keys }

// UnlockedSlot is the id of the slot that opened the vault.
func (v *Vault) UnlockedSlot() string { return v.slotID }

// Wipe forgets the master key and derived keys. Their pages are unmapped:
// nothing may still be using Keys or MasterKey (see crypto's Wipe).
func (v *Vault) Wipe() {
	v.keys.Wipe()
	v.master.Wipe()
	v.keys, v.master, v.slotID = nil, nil, ""
}

// setKey adopts m as the master key after checking it against the header
// MAC. On any failure m is wiped and the vault stays locked.
func (v *Vault) setKey(m *crypto.MasterKey, slotID string) error {
	k, err := crypto.DeriveKeys(m)
	if err != nil {
		m.Wipe()
		return err
	}
	if err := crypto.VerifyHeader(k, v.raw); err != nil {
		k.Wipe()
		m.Wipe()
		// A slot opened but the MAC does not match: someone edited the
		// header (e.g. added a slot of their own). Refuse rather than trust
		// any field of it.
		return fmt.Errorf("vault header was modified: %w", err)
	}
	v.Wipe()
	v.master, v.keys, v.slotID = m, k, slotID
	return nil
}

// TPMSlots returns the TPM slots, optionally only those sealed under the
// storage root key with the given Name (nil: all).
func (v *Vault) TPMSlots(srkName []byte) []*crypto.Slot {
	var out []*crypto.Slot
	for i := range v.Header.Slots {
		s := &v.Header.Slots[i]
		if s.Type != crypto.SlotTPM {
			continue
		}
		if srkName == nil || string(s.TPM.SRKName) == string(srkName) {
			out = append(out, s)
		}
	}
	return out
}

// RecoverySlot returns the recovery slot, if the vault still has one.
func (v *Vault) RecoverySlot() (*crypto.Slot, bool) {
	for i := range v.Header.Slots {
		if v.Header.Slots[i].Type == crypto.SlotRecovery {
			return &v.Header.Slots[i], true
		}
	}
	return nil, false
}

// maxHeaderFile is the largest header crypto.ParseHeader accepts.
const maxHeaderFile = crypto.MaxHeaderFileSize

// readHeaderFile reads the header without trusting what the cipher folder
// put at its name: a FIFO (open would block), a device or a symlink to one
// (/dev/zero never ends) is refused, and at most one byte more than the
// largest valid header is read.
func readHeaderFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	return io.ReadAll(io.LimitReader(f, maxHeaderFile+1))
}
