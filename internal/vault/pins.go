package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// A TPM slot's id, KDF parameters and sealed blob come from the header
// before it can be authenticated (its MAC key is behind the slot). Someone
// who can write the cipher folder could change them, e.g. the salt, so that
// the right password derives a wrong authValue: each attempt would then cost
// a TPM dictionary-attack strike, or one of an attempt-limited slot's tries,
// and say "wrong password". So this machine pins the TPM slots it makes or
// unlocks, in a record outside the synced folder, and an unlock refuses a
// slot that is not byte for byte one it pinned before a password is derived
// or the TPM is asked anything.
//
// The record is keyed by what the cloud cannot choose: this machine's SRK
// Name (the TPM) and the cipher directory's absolute path as the user gave
// it (symlinks not resolved: the synced folder could plant one). The
// header's vault_id is recorded and compared, never used as the key. Once
// there is a record for (path, SRK):
//
//   - a different vault_id at that path is refused (VaultIDChangedError);
//   - a TPM slot of this SRK that differs in any byte of its id, kdf or tpm
//     object from every pinned slot is never tried: renamed, re-salted,
//     pointed at another NV index, or added by someone else (an old blob
//     under a new id); SlotChangedError or UnknownSlotError when none is left;
//   - the pinned slots are tried in the order this machine first pinned
//     them (for slots made here: the order they were made in), whatever
//     order the header lists them in.
//
// A path with no record is trusted on first use (as is every slot there),
// except that a record left by an older sealfs (trust.go's per-vault_id
// files, legacy_pins.go) still refuses the slots it pinned if they changed.
// The record holds only digests of header fields the cipher folder shows
// anyway, nothing derived from the password.
//
// sealfs' own changes add the new slot's digest before the header is saved
// and drop the old one after, so a crash in between leaves a record that
// accepts whichever header survived.

// PinStore is this user's record of pinned slots: $XDG_STATE_HOME/sealfs,
// else ~/.local/state/sealfs, file pins.json.
type PinStore struct {
	Dir string
}

const pinFileName = "pins.json"

// DefaultPinStore is the store of the current user (XDG base directory
// specification: a relative $XDG_STATE_HOME is ignored).
func DefaultPinStore() (*PinStore, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil || !filepath.IsAbs(home) {
			return nil, errors.New("neither $XDG_STATE_HOME nor $HOME is set to an absolute path")
		}
		base = filepath.Join(home, ".local", "state")
	}
	return &PinStore{Dir: filepath.Join(base, "sealfs")}, nil
}

// ErrPinRefused is what every refusal by this machine's pins unwraps to.
var ErrPinRefused = errors.New("refused by this machine's record of the vault's TPM slots")

// SlotChangedError: a TPM slot this machine pinned differs from the pin.
// Others are this machine's other slots, which are not tried either
// unless named (the password may be the changed slot's).
type SlotChangedError struct {
	SlotID string
	Others []string
}

func (e *SlotChangedError) Error() string {
	return fmt.Sprintf("this vault's TPM slot %s was changed outside sealfs since it was last used on this machine "+
		"(its key-derivation parameters or sealed blob differ); refusing to spend a password try on it%s. "+
		"If you changed it on another machine, run `sealfs recover` with your recovery key", e.SlotID, otherSlots(e.Others))
}

// SlotMissingError: a TPM slot this machine pinned is gone from the
// header, beside others of this machine that are fine.
type SlotMissingError struct {
	SlotID string
	Others []string
}

func (e *SlotMissingError) Error() string {
	return fmt.Sprintf("this machine's TPM slot %s is missing from the vault header (revoked on another device, "+
		"or the header was changed outside sealfs); refusing to spend a password try on it%s", e.SlotID, otherSlots(e.Others))
}

func (e *SlotMissingError) Unwrap() error { return ErrPinRefused }

// otherSlots tells how to unlock through one of this machine's other
// slots: by naming it, since an unnamed try might go to the wrong one.
func otherSlots(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return fmt.Sprintf(" or on another slot, where the password might not belong; to unlock with this machine's "+
		"slot %s name it: --slot %s", ids[0], ids[0])
}

func (e *SlotChangedError) Unwrap() error { return ErrPinRefused }

// UnknownSlotError: the vault holds TPM slots for this machine's TPM that
// this machine never made or unlocked, and none that it did.
type UnknownSlotError struct {
	SlotIDs []string
}

func (e *UnknownSlotError) Error() string {
	return fmt.Sprintf("this vault's TPM slot %s for this machine's TPM is not one this machine made or unlocked "+
		"(it was added or renamed outside sealfs); refusing to spend a password try on it. "+
		"If you made it on purpose, run `sealfs recover` with your recovery key", joinIDs(e.SlotIDs))
}

func (e *UnknownSlotError) Unwrap() error { return ErrPinRefused }

// VaultIDChangedError: the vault at this path is not the one this machine
// used there.
type VaultIDChangedError struct {
	Dir string
}

func (e *VaultIDChangedError) Error() string {
	return fmt.Sprintf("the vault in %s has another vault ID than the one this machine used there (the header was "+
		"changed or replaced outside sealfs); refusing to spend a password try on it. If you replaced the vault on "+
		"purpose, run `sealfs recover` with its recovery key", e.Dir)
}

func (e *VaultIDChangedError) Unwrap() error { return ErrPinRefused }

func joinIDs(ids []string) string {
	switch len(ids) {
	case 0:
		return "?"
	case 1:
		return ids[0]
	}
	return fmt.Sprintf("%s (and %d more)", ids[0], len(ids)-1)
}

// pinFile is pins.json.
type pinFile struct {
	Version int         `json:"version"`
	Vaults  []pinRecord `json:"vaults"`
}

// pinRecord pins one (cipher directory, TPM) pair.
type pinRecord struct {
	Dir     string    `json:"dir"`      // absolute path of the cipher directory
	SRKName string    `json:"srk_name"` // hex
	VaultID string    `json:"vault_id"` // hex
	Slots   []slotPin `json:"slots"`
}

// slotPin is one accepted state of one slot. A slot id has two for a
// moment while sealfs changes it.
type slotPin struct {
	ID      string    `json:"id"`
	Digest  string    `json:"digest"` // pinDigest, hex
	NVIndex uint32    `json:"nv_index,omitempty"`
	NVName  string    `json:"nv_name,omitempty"` // hex
	Since   time.Time `json:"since"`             // when this machine first pinned the slot id
	Used    time.Time `json:"used"`              // last made or unlocked here
}

// maxPinFile bounds what is read back: a few hundred bytes per slot.
const maxPinFile = 1 << 20

// pinDigest is the SHA-256 of the slot's id, kdf and tpm objects, encoded
// by encoding/json exactly as the header stores them.
func pinDigest(s *crypto.Slot) string {
	b, err := json.Marshal(struct {
		ID  string            `json:"id"`
		KDF *crypto.KDFParams `json:"kdf"`
		TPM *crypto.TPMBlob   `json:"tpm"`
	}{s.ID, s.KDF, s.TPM})
	if err != nil {
		return "" // cannot happen: the types marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (p *PinStore) path() string { return filepath.Join(p.Dir, pinFileName) }

// load reads the record file; a missing one is empty.
func (p *PinStore) load() (*pinFile, error) {
	pf := &pinFile{Version: 2}
	f, err := os.OpenFile(p.path(), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return pf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading this machine's record of vault TPM slots: %w", err)
	}
	defer f.Close()
	bad := func(why string) error {
		return fmt.Errorf("this machine's record of vault TPM slots, %s, is %s; "+
			"remove it to trust the slots in the header again at their next use", p.path(), why)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, bad("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPinFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p.path(), err)
	}
	if len(b) > maxPinFile {
		return nil, bad("too large")
	}
	if err := decodePinFile(b, pf); err != nil {
		return nil, bad("damaged")
	}
	return pf, nil
}

// decodePinFile parses pins.json strictly.
func decodePinFile(b []byte, pf *pinFile) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(pf); err != nil {
		return err
	}
	if pf.Version != 2 {
		return fmt.Errorf("version %d", pf.Version)
	}
	for _, r := range pf.Vaults {
		if !filepath.IsAbs(r.Dir) || r.SRKName == "" || r.VaultID == "" {
			return errors.New("incomplete record")
		}
	}
	return nil
}

// records returns the records for dir (every TPM), or the one for (dir, srk).
func (pf *pinFile) records(dir string, srk []byte) []*pinRecord {
	var out []*pinRecord
	for i := range pf.Vaults {
		r := &pf.Vaults[i]
		if r.Dir == dir && (srk == nil || r.SRKName == hex.EncodeToString(srk)) {
			out = append(out, r)
		}
	}
	return out
}

// record returns the record for (dir, srk), nil if there is none.
func (pf *pinFile) record(dir string, srk []byte) *pinRecord {
	if rs := pf.records(dir, srk); len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// pin returns the pin of slot in r, nil if its exact state is not pinned.
func (r *pinRecord) pin(s *crypto.Slot) *slotPin {
	d := pinDigest(s)
	for i := range r.Slots {
		if r.Slots[i].ID == s.ID && r.Slots[i].Digest == d {
			return &r.Slots[i]
		}
	}
	return nil
}

// hasID reports whether r pins any state of slot id.
func (r *pinRecord) hasID(id string) bool {
	return slices.ContainsFunc(r.Slots, func(p slotPin) bool { return p.ID == id })
}

// errUnchanged, from an update's change, means there is nothing to write.
var errUnchanged = errors.New("unchanged")

// update changes the record file under an flock of the store directory
// (concurrent sealfs processes serialise there) and replaces it
// atomically (0600, in a 0700 directory).
func (p *PinStore) update(change func(pf *pinFile) error) error {
	if err := p.ensureDir(); err != nil {
		return err
	}
	d, err := os.Open(p.Dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", p.Dir, err)
	}
	defer unix.Flock(int(d.Fd()), unix.LOCK_UN) //nolint:errcheck // closing the fd unlocks anyway
	pf, err := p.load()
	if err != nil {
		return err
	}
	if err := change(pf); errors.Is(err, errUnchanged) {
		return nil
	} else if err != nil {
		return err
	}
	pf.Vaults = slices.DeleteFunc(pf.Vaults, func(r pinRecord) bool { return len(r.Slots) == 0 })
	b, err := json.MarshalIndent(pf, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d, p.Dir, pinFileName, append(b, '\n'))
}

// ensureDir creates the store (0700, parents too) and refuses one that is
// not a directory of this user's; it tightens a looser mode to 0700.
func (p *PinStore) ensureDir() error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(p.Dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s must be a directory owned by uid %d", p.Dir, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(p.Dir, 0o700)
	}
	return nil
}

// pinOp says how recordPin changes a slot's pins.
type pinOp int

const (
	pinAdd  pinOp = iota // accept this state too (an unlock, or before a save)
	pinOnly              // this state is the slot's only one (after a save)
)

// recordPin pins slot for (dir, its SRK) with vaultID. A record there for
// another vault ID is replaced: callers hold an unlocked vault, so its
// header is authentic and is now the vault at dir.
func (p *PinStore) recordPin(dir string, vaultID []byte, slot *crypto.Slot, op pinOp, now time.Time) error {
	return p.update(func(pf *pinFile) error {
		r := pf.record(dir, slot.TPM.SRKName)
		if r == nil {
			pf.Vaults = append(pf.Vaults, pinRecord{Dir: dir, SRKName: hex.EncodeToString(slot.TPM.SRKName)})
			r = &pf.Vaults[len(pf.Vaults)-1]
		}
		if id := hex.EncodeToString(vaultID); r.VaultID != id {
			r.VaultID, r.Slots = id, nil
		}
		d := pinDigest(slot)
		n := len(r.Slots)
		if op == pinOnly {
			r.Slots = slices.DeleteFunc(r.Slots, func(p slotPin) bool { return p.ID == slot.ID && p.Digest != d })
		}
		if pin := r.pin(slot); pin != nil {
			if len(r.Slots) == n && op == pinAdd {
				return errUnchanged // an unlock of a pinned slot writes nothing
			}
			pin.Used = now.UTC()
			return nil
		}
		if op == pinOnly {
			return nil // the state was dropped meanwhile: nothing to narrow to
		}
		since := now.UTC()
		for _, p := range r.Slots {
			if p.ID == slot.ID && p.Since.Before(since) {
				since = p.Since // a new state of a slot keeps its place
			}
		}
		r.Slots = append(r.Slots, slotPin{ID: slot.ID, Digest: d, NVIndex: slot.TPM.NVIndex,
			NVName: hex.EncodeToString(slot.TPM.NVName), Since: since, Used: now.UTC()})
		return nil
	})
}

// dropPins forgets every state of the slots ids at dir: they were revoked
// or replaced, and an old header copy holding them is refused from now on.
func (p *PinStore) dropPins(dir string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return p.update(func(pf *pinFile) error {
		for _, r := range pf.records(dir, nil) {
			r.Slots = slices.DeleteFunc(r.Slots, func(p slotPin) bool { return slices.Contains(ids, p.ID) })
		}
		return nil
	})
}
