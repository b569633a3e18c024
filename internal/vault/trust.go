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

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// A TPM slot's KDF parameters and sealed blob come from the header before
// it can be authenticated (its MAC key is behind the slot). Someone who can
// write the cipher folder could change them, e.g. the salt, so that the right
// password derives a wrong authValue: each attempt would then cost a TPM
// dictionary-attack strike, or one of an attempt-limited slot's tries, and
// say "wrong password". So this machine pins each TPM slot it has unlocked
// or created: the SHA-256 of the slot's KDF parameters and blob, kept per
// vault in a local state directory outside the synced folder, and an unlock
// refuses a pinned slot that differs before a password is derived or the
// TPM is asked anything. A slot never seen here is trusted on first use.
//
// The record holds only digests of header fields that the cipher folder
// shows anyway: nothing derived from the password.
//
// A slot may have two accepted digests for a moment: sealfs' own changes
// (passwd) add the new digest before the header is saved and drop the old
// one after, so a crash in between leaves a record that accepts whichever
// header survived.

// TrustStore is the directory of slot pins: $XDG_STATE_HOME/sealfs, else
// ~/.local/state/sealfs. One file per vault, trust-<vault ID in hex>.json.
type TrustStore struct {
	Dir string
}

// DefaultTrustStore is the store of the current user (XDG base directory
// specification: a relative $XDG_STATE_HOME is ignored).
func DefaultTrustStore() (*TrustStore, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil || !filepath.IsAbs(home) {
			return nil, errors.New("neither $XDG_STATE_HOME nor $HOME is set to an absolute path")
		}
		base = filepath.Join(home, ".local", "state")
	}
	return &TrustStore{Dir: filepath.Join(base, "sealfs")}, nil
}

// SlotChangedError: a TPM slot this machine pinned differs from the pin.
type SlotChangedError struct {
	SlotID string
}

func (e *SlotChangedError) Error() string {
	return fmt.Sprintf("this vault's TPM slot %s was changed outside sealfs since it was last used on this machine "+
		"(its key-derivation parameters or sealed blob differ); refusing to spend a password try on it. "+
		"If you changed it on another machine, run `sealfs recover` with your recovery key", e.SlotID)
}

// trustRecord is the JSON of one vault's pins.
type trustRecord struct {
	VaultID string              `json:"vault_id"` // hex
	Slots   map[string][]string `json:"slots"`    // slot id → accepted slotDigests (hex)
}

// maxTrustRecord bounds what is read back: a few hundred bytes per slot.
const maxTrustRecord = 1 << 20

// slotDigest is the SHA-256 of the slot's canonical JSON: its kdf and tpm
// objects, encoded by encoding/json (struct fields in declaration order,
// byte strings as standard base64), exactly as the header stores them.
func slotDigest(s *crypto.Slot) (string, error) {
	b, err := json.Marshal(struct {
		KDF *crypto.KDFParams `json:"kdf"`
		TPM *crypto.TPMBlob   `json:"tpm"`
	}{s.KDF, s.TPM})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func (t *TrustStore) path(vaultID []byte) string {
	return filepath.Join(t.Dir, "trust-"+hex.EncodeToString(vaultID)+".json")
}

// load reads the vault's record; a missing one is empty.
func (t *TrustStore) load(vaultID []byte) (*trustRecord, error) {
	rec := &trustRecord{VaultID: hex.EncodeToString(vaultID), Slots: map[string][]string{}}
	p := t.path(vaultID)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading this machine's record of the vault's TPM slots: %w", err)
	}
	defer f.Close()
	bad := func(why string) error {
		return fmt.Errorf("this machine's record of the vault's TPM slots, %s, is %s; "+
			"remove it to trust the slots in the header again at their next use", p, why)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, bad("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTrustRecord+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(b) > maxTrustRecord {
		return nil, bad("too large")
	}
	var got trustRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || got.VaultID != rec.VaultID {
		return nil, bad("damaged")
	}
	for id, d := range got.Slots {
		rec.Slots[id] = d
	}
	return rec, nil
}

// check refuses slot when this machine pinned it with other contents.
func (t *TrustStore) check(vaultID []byte, slot *crypto.Slot) error {
	rec, err := t.load(vaultID)
	if err != nil {
		return err
	}
	pinned, ok := rec.Slots[slot.ID]
	if !ok {
		return nil // first use on this machine
	}
	d, err := slotDigest(slot)
	if err != nil {
		return err
	}
	if !slices.Contains(pinned, d) {
		return &SlotChangedError{SlotID: slot.ID}
	}
	return nil
}

// pinned reports whether the vault's record has a pin for slot id.
func (t *TrustStore) pinned(vaultID []byte, id string) (bool, error) {
	rec, err := t.load(vaultID)
	if err != nil {
		return false, err
	}
	_, ok := rec.Slots[id]
	return ok, nil
}

// record pins slot: with only, its digest becomes the slot's one accepted
// digest; else it is added to those already accepted. Concurrent sealfs
// processes serialise on an flock of the directory; the file is replaced
// atomically (0600, in a 0700 directory).
func (t *TrustStore) record(vaultID []byte, slot *crypto.Slot, only bool) error {
	dig, err := slotDigest(slot)
	if err != nil {
		return err
	}
	if err := t.ensureDir(); err != nil {
		return err
	}
	d, err := os.Open(t.Dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", t.Dir, err)
	}
	defer unix.Flock(int(d.Fd()), unix.LOCK_UN) //nolint:errcheck // closing the fd unlocks anyway
	rec, err := t.load(vaultID)
	if err != nil {
		return err
	}
	cur := rec.Slots[slot.ID]
	switch {
	case only && len(cur) == 1 && cur[0] == dig, !only && slices.Contains(cur, dig):
		return nil
	case only:
		rec.Slots[slot.ID] = []string{dig}
	default:
		rec.Slots[slot.ID] = append(cur, dig)
	}
	b, err := json.MarshalIndent(rec, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d, t.Dir, filepath.Base(t.path(vaultID)), append(b, '\n'))
}

// ensureDir creates the store (0700, parents too) and refuses one that is
// not a directory of this user's; it tightens a looser mode to 0700.
func (t *TrustStore) ensureDir() error {
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(t.Dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s must be a directory owned by uid %d", t.Dir, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(t.Dir, 0o700)
	}
	return nil
}
