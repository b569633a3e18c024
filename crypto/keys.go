package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the size of the master key and of every derived key, in bytes.
const KeySize = 32

// HKDF info labels. Each derived key feeds exactly one algorithm, which is the
// fix for the "one key for two algorithms" finding of the 2017 gocryptfs audit.
// The labels are part of the format: docs/format.md §4.1 repeats them verbatim.
const (
	labelContent   = "sealfs v1 content"          // → per-file keys (HKDF again, salt = file ID)
	labelFileKey   = "sealfs v1 file key"         // per-file AES-256-GCM key from the content key
	labelNameMAC   = "sealfs v1 name siv mac"     // HMAC-SHA256 PRF of the name SIV
	labelNameEnc   = "sealfs v1 name siv ctr"     // AES-256-CTR key of the name SIV
	labelDirID     = "sealfs v1 directory id"     // HMAC-SHA256 key deriving directory IDs
	labelSymlink   = "sealfs v1 symlink target"   // AES-256-GCM key for symlink targets
	labelXattr     = "sealfs v1 xattr value"      // AES-256-GCM key for xattr values
	labelHeaderMAC = "sealfs v1 vault header mac" // HMAC-SHA256 key authenticating the vault header
)

// MasterKey is the vault's 256-bit root secret. It lives in locked memory and
// must be wiped with Wipe once the vault is locked.
type MasterKey struct {
	buf *lockedBuf
}

// NewMasterKey draws a fresh master key from crypto/rand.
func NewMasterKey() (*MasterKey, error) {
	m := &MasterKey{buf: newLockedBuf(KeySize)}
	if _, err := rand.Read(m.buf.b); err != nil {
		m.Wipe()
		return nil, fmt.Errorf("generating master key: %w", err)
	}
	return m, nil
}

// MasterKeyFromBytes copies b into locked memory. The caller should wipe b.
func MasterKeyFromBytes(b []byte) (*MasterKey, error) {
	if len(b) != KeySize {
		return nil, fmt.Errorf("master key has %d bytes, want %d", len(b), KeySize)
	}
	m := &MasterKey{buf: newLockedBuf(KeySize)}
	copy(m.buf.b, b)
	return m, nil
}

// Bytes exposes the key for sealing into a keyslot. Do not retain the slice
// past Wipe.
func (m *MasterKey) Bytes() []byte { return m.buf.b }

// Locked reports whether the key's memory is mlock'ed.
func (m *MasterKey) Locked() bool { return m.buf.Locked() }

// LockErr says why the key's memory is not mlock'ed (nil when it is):
// crypto does no logging, so the caller warns.
func (m *MasterKey) LockErr() error { return m.buf.lockErr }

// Wipe zeroes and releases the key memory. Safe to call twice.
//
// The pages are unmapped, not just zeroed, so no use of the key may be in
// flight or follow: a slice from Bytes read concurrently faults the whole
// process (SIGSEGV), it does not merely read zeros. Callers stop every user
// first; the mount daemon wipes only after the FUSE server has stopped
// (fs.Server's Wait has returned).
func (m *MasterKey) Wipe() {
	if m != nil && m.buf != nil {
		m.buf.wipe()
	}
}

// Keys are the subkeys derived from a master key, each for one purpose.
// Construct with DeriveKeys; call Wipe when the vault locks.
type Keys struct {
	buf *lockedBuf // content | nameMAC | nameEnc | dirID | symlink | xattr | headerMAC

	nameCTR  cipher.Block
	symlinkA cipher.AEAD
	xattrA   cipher.AEAD
}

const (
	offContent = iota * KeySize
	offNameMAC
	offNameEnc
	offDirID
	offSymlink
	offXattr
	offHeaderMAC
	keysLen
)

// DeriveKeys runs HKDF-SHA256 over the master key once per purpose.
func DeriveKeys(m *MasterKey) (*Keys, error) {
	if m == nil || m.buf == nil || m.buf.b == nil {
		return nil, errors.New("deriving keys: master key is wiped")
	}
	k := &Keys{buf: newLockedBuf(keysLen)}
	labels := []struct {
		off   int
		label string
	}{
		{offContent, labelContent}, {offNameMAC, labelNameMAC}, {offNameEnc, labelNameEnc},
		{offDirID, labelDirID}, {offSymlink, labelSymlink}, {offXattr, labelXattr},
		{offHeaderMAC, labelHeaderMAC},
	}
	for _, l := range labels {
		if err := hkdfInto(k.buf.b[l.off:l.off+KeySize], m.buf.b, nil, l.label); err != nil {
			k.Wipe()
			return nil, err
		}
	}
	var err error
	if k.nameCTR, err = aes.NewCipher(k.key(offNameEnc)); err != nil {
		k.Wipe()
		return nil, fmt.Errorf("name cipher: %w", err)
	}
	if k.symlinkA, err = newGCM(k.key(offSymlink)); err != nil {
		k.Wipe()
		return nil, err
	}
	if k.xattrA, err = newGCM(k.key(offXattr)); err != nil {
		k.Wipe()
		return nil, err
	}
	return k, nil
}

func (k *Keys) key(off int) []byte { return k.buf.b[off : off+KeySize] }

// Wipe zeroes the derived keys. The AES key schedules held by the cipher
// objects live on the Go heap (crypto/aes offers no way to clear them); they
// become unreachable here and are collected with the Keys value.
//
// As with MasterKey.Wipe, the key pages are unmapped: no method of k (nor
// of a file engine built from it) may run concurrently with Wipe or after
// it, or the process faults. The mount daemon wipes only after the FUSE
// server has stopped serving requests. Wipe is not a way to revoke keys
// from under live users.
func (k *Keys) Wipe() {
	if k == nil || k.buf == nil {
		return
	}
	k.buf.wipe()
	k.nameCTR, k.symlinkA, k.xattrA = nil, nil, nil
}

// hkdfInto fills out with HKDF-SHA256(ikm, salt, info).
func hkdfInto(out, ikm, salt []byte, info string) error {
	b, err := hkdf.Key(sha256.New, ikm, salt, info, len(out))
	if err != nil {
		return fmt.Errorf("hkdf %q: %w", info, err)
	}
	copy(out, b)
	clear(b)
	return nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return a, nil
}
