// Package vault is the seam between the vault header file on disk, the
// crypto package and a TPM: it loads and atomically rewrites sealfs.vault,
// unlocks the master key through a keyslot, and edits the slot list.
//
// A Vault starts locked (only the unauthenticated slots are readable). After
// UnlockPassword or UnlockRecovery it holds the master key and derived keys in
// locked memory and may rewrite the header; Wipe locks it again.
//
// The header file holds two copies of the header (format 2), and a sync
// service may have left conflict copies of the whole file beside it
// (conflicts.go). An unlock authenticates every copy it can with the key
// and merges them (crypto.MergeHeaders); Repair then rewrites a damaged
// file and folds the conflict copies in.
//
// The TPM slots a machine has used are pinned in a record outside the
// cipher folder (pins.go), so that a slot changed there is refused before
// a password try is spent on it.
package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
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
	Dir string
	// Header is, while locked, the first whole copy of sealfs.vault (not
	// authenticated); once unlocked, the authenticated merge of every copy
	// the key authenticates.
	Header *crypto.Header

	log    *slog.Logger
	anchor string             // absolute Dir: this machine's pins are keyed by it
	raw    []byte             // sealfs.vault as read or last written (Save refuses if it changed)
	file   *crypto.HeaderFile // raw, decoded
	// conflicts are the conflict copies of sealfs.vault a sync service
	// left (format 2, same vault ID); merged, those the key authenticated.
	conflicts []*conflictCopy
	merged    []*conflictCopy
	// repairs says why sealfs.vault should be rewritten (Repair), once
	// unlocked: a damaged copy, conflict copies to fold in.
	repairs  []string
	upgraded bool // Save rewrote a format 1 header as format 2

	master *crypto.MasterKey
	keys   *crypto.Keys
	slotID string // slot that unlocked the vault

	// pins records this machine's TPM slots (pins.go); nil, with pinsErr
	// saying why, when the user has no state directory.
	pins    *PinStore
	pinsErr error
}

// Load reads and parses the header of the vault in dir, and the conflict
// copies of it that a sync service may have left. Nothing is authenticated
// until the vault is unlocked.
func Load(dir string, log *slog.Logger) (*Vault, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	anchor, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, crypto.HeaderFileName)
	raw, err := readHeaderFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s in %s)", ErrNotVault, crypto.HeaderFileName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading vault header: %w", err)
	}
	f, err := crypto.ParseHeaderFile(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v := &Vault{Dir: dir, Header: f.First().Header, log: log, anchor: anchor, raw: raw, file: f}
	for i, c := range f.Copies {
		if c.Err != nil {
			log.Warn("a copy of the vault header is damaged; the other one is used, and an unlock rewrites both",
				"file", path, "copy", i+1, "err", c.Err)
		}
	}
	v.conflicts = findConflicts(dir, v.Header.VaultID, log)
	v.pins, v.pinsErr = DefaultPinStore()
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

// source is one decoded copy of the header that a slot can come from:
// either copy of sealfs.vault, or a conflict copy's first whole copy.
type source struct {
	copy     *crypto.HeaderCopy
	conflict *conflictCopy // nil for sealfs.vault
}

func (s source) header() *crypto.Header { return s.copy.Header }

// sources lists the whole copies: sealfs.vault's first (the primary one,
// which v.Header is while locked), its second if it differs, then the
// conflict copies.
func (v *Vault) sources() []source {
	var out []source
	for i := range v.file.Copies {
		c := &v.file.Copies[i]
		if c.Header == nil || (i > 0 && v.file.Clean) {
			continue
		}
		out = append(out, source{copy: c})
	}
	for _, cc := range v.conflicts {
		out = append(out, source{copy: cc.file.First(), conflict: cc})
	}
	return out
}

// setKey adopts m as the master key after checking it against the header
// copy src that the unlocking slot came from, or another copy holding the
// same slot byte for byte. Every other copy the key authenticates is
// merged in, so v.Header is then the authenticated state of the vault. On
// any failure m is wiped and the vault stays locked.
func (v *Vault) setKey(m *crypto.MasterKey, src source, opened *crypto.Slot) error {
	warnUnlocked(v.log, m)
	k, err := crypto.DeriveKeys(m)
	if err != nil {
		m.Wipe()
		return err
	}
	if !v.authenticates(k, src, opened) {
		k.Wipe()
		m.Wipe()
		// A slot opened but the MAC does not match: someone edited the
		// header (e.g. added a slot of their own). Refuse rather than trust
		// any field of it.
		return fmt.Errorf("vault header was modified: %w", crypto.ErrHeaderMAC)
	}
	slotID := ""
	if opened != nil {
		slotID = opened.ID
	}
	var authentic []*crypto.Header
	var repairs []string
	for i := range v.file.Copies {
		c := &v.file.Copies[i]
		switch {
		case c.Err != nil:
			repairs = append(repairs, fmt.Sprintf("copy %d of %s was damaged (%v)", i+1, crypto.HeaderFileName, c.Err))
		case c.Verify(k) != nil:
			repairs = append(repairs, fmt.Sprintf("copy %d of %s failed authentication", i+1, crypto.HeaderFileName))
		default:
			authentic = append(authentic, c.Header)
		}
	}
	if len(authentic) == 0 {
		authentic = append(authentic, src.header()) // a conflict copy is all there is
	}
	var merged []*conflictCopy
	for _, cc := range v.conflicts {
		if cc.file.First().Verify(k) != nil {
			v.log.Warn("ignoring a file that looks like a sync conflict copy of the vault header: "+
				"this vault's key does not authenticate it", "file", cc.name)
			continue
		}
		authentic = append(authentic, cc.file.First().Header)
		merged = append(merged, cc)
		repairs = append(repairs, "merged the sync conflict copy "+cc.name)
	}
	h, err := crypto.MergeHeaders(authentic...)
	if err != nil {
		k.Wipe()
		m.Wipe()
		return err
	}
	if len(repairs) == 0 && !v.file.Clean {
		repairs = append(repairs, "the two copies of "+crypto.HeaderFileName+" differed")
	}
	v.Wipe()
	v.master, v.keys, v.slotID = m, k, slotID
	if len(repairs) == 0 {
		v.Header = authentic[0] // as it is on disk: a format 1 header stays one until it is rewritten
	} else {
		v.Header = h
	}
	v.repairs, v.merged = repairs, merged
	return nil
}

// authenticates reports whether k authenticates src, or, when only
// src's MAC was edited, another copy that holds the slot that opened.
func (v *Vault) authenticates(k *crypto.Keys, src source, opened *crypto.Slot) bool {
	if src.copy.Verify(k) == nil {
		return true
	}
	if opened == nil {
		return false
	}
	want, _ := json.Marshal(opened)
	for _, o := range v.sources() {
		if s, ok := o.header().Slot(opened.ID); ok && o.copy.Verify(k) == nil {
			if got, _ := json.Marshal(s); bytes.Equal(got, want) {
				return true
			}
		}
	}
	return false
}

// NeedsRepair says why sealfs.vault should be rewritten, once unlocked:
// nil when it is whole and no conflict copy waits to be merged.
func (v *Vault) NeedsRepair() []string { return v.repairs }

// Repair rewrites sealfs.vault from the authenticated state of the vault
// (both copies whole, conflict copies merged, then removed) and returns
// what it repaired; nothing when nothing needed it.
func (v *Vault) Repair() ([]string, error) {
	if !v.Unlocked() {
		return nil, ErrLocked
	}
	if len(v.repairs) == 0 {
		return nil, nil
	}
	done := v.repairs
	if err := v.Save(); err != nil {
		return nil, err
	}
	return done, nil
}

// HeaderProblems lists, without the key, what is wrong with the header
// file: damaged copies and conflict copies waiting to be merged.
func (v *Vault) HeaderProblems() []string {
	var out []string
	for i, c := range v.file.Copies {
		if c.Err != nil {
			out = append(out, fmt.Sprintf("copy %d of %s is damaged (%v); an unlock repairs it", i+1, crypto.HeaderFileName, c.Err))
		}
	}
	if len(out) == 0 && !v.file.Clean {
		out = append(out, "the two copies of "+crypto.HeaderFileName+" differ; an unlock repairs it")
	}
	for _, cc := range v.conflicts {
		out = append(out, "sync conflict copy "+cc.name+": merged at the next unlock if this vault's key authenticates it")
	}
	return out
}

// TPMSlots returns the TPM slots, optionally only those sealed under the
// storage root key with the given Name (nil: all).
func (v *Vault) TPMSlots(srkName []byte) []*crypto.Slot {
	return tpmSlots(v.Header, srkName)
}

func tpmSlots(h *crypto.Header, srkName []byte) []*crypto.Slot {
	var out []*crypto.Slot
	for i := range h.Slots {
		s := &h.Slots[i]
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

// readHeaderFile reads a header file without trusting what the cipher
// folder put at its name: a FIFO (open would block), a device or a symlink
// to one (/dev/zero never ends) is refused, and at most one byte more than
// the largest valid header is read.
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
	return io.ReadAll(io.LimitReader(f, crypto.MaxHeaderFileSize+1))
}

// mlockWarned makes the warning about unlocked key memory once per process.
var mlockWarned sync.Once

// warnUnlocked warns once when the key's pages could not be locked in
// memory: they may then be written to swap.
func warnUnlocked(log *slog.Logger, m *crypto.MasterKey) {
	if m.Locked() {
		return
	}
	mlockWarned.Do(func() {
		log.Warn("could not lock the vault key's memory (mlock): it may be written to swap; "+
			"raise RLIMIT_MEMLOCK (ulimit -l) or use encrypted swap", "err", m.LockErr())
	})
}
