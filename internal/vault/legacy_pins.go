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

	"github.com/sealfs/sealfs/crypto"
)

// Records of sealfs before issue 14: one file per vault,
// trust-<vault ID in hex>.json, pinning each slot id to digests of its kdf
// and tpm objects. They were keyed by the header's own vault_id, which the
// cloud can change, so they are only read, and only for a path this
// machine has no pins.json record of yet (its first unlock after the
// upgrade): a slot they pinned that changed is refused, as it was before.
// pins.json takes over with that unlock.

type legacyRecord struct {
	VaultID string              `json:"vault_id"`
	Slots   map[string][]string `json:"slots"`
}

// legacyDigest is the old record's digest: kdf and tpm, not the id.
func legacyDigest(s *crypto.Slot) string {
	b, err := json.Marshal(struct {
		KDF *crypto.KDFParams `json:"kdf"`
		TPM *crypto.TPMBlob   `json:"tpm"`
	}{s.KDF, s.TPM})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// legacyCheck refuses slot if an old record of vaultID pinned its id with
// other contents. A missing record, or none for the id, refuses nothing.
func (p *PinStore) legacyCheck(vaultID []byte, slot *crypto.Slot) error {
	path := filepath.Join(p.Dir, "trust-"+hex.EncodeToString(vaultID)+".json")
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	bad := fmt.Errorf("this machine's old record of the vault's TPM slots, %s, is damaged; "+
		"remove it to trust the slots in the header again at their next use", path)
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return bad
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPinFile+1))
	if err != nil || len(b) > maxPinFile {
		return bad
	}
	var rec legacyRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if dec.Decode(&rec) != nil || rec.VaultID != hex.EncodeToString(vaultID) {
		return bad
	}
	pinned, ok := rec.Slots[slot.ID]
	if ok && !slices.Contains(pinned, legacyDigest(slot)) {
		return &SlotChangedError{SlotID: slot.ID}
	}
	return nil
}
