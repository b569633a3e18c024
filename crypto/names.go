package crypto

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Names (docs/format.md §5). Each path component is encrypted
// deterministically with SIV (Rogaway–Shrimpton, "Deterministic
// Authenticated-Encryption", 2006) instantiated from standard primitives:
//
//	siv = HMAC-SHA256(nameMACKey, len(dirID)‖dirID‖pad(name))[:16]
//	ct  = AES-256-CTR(nameEncKey, iv=siv, pad(name))
//	enc = base64url-nopad(siv ‖ ct)
//
// Deterministic, so a lookup encrypts the name and stats one path; the
// parent's directory ID as associated data makes equal names in different
// directories look unrelated. Names are padded to a multiple of 16 bytes so
// the cipher name reveals the plaintext length only to that granularity.
const (
	sivSize      = 16
	namePadBlock = 16
	// MaxNameLen is the longest plaintext name accepted (Linux NAME_MAX).
	MaxNameLen = 255
	// MaxEncodedNameLen caps a stored cipher name. Longer ones go to a long
	// name; 220 (not 255) leaves sync services room for conflict suffixes.
	MaxEncodedNameLen = 220
	// LongNamePrefix starts every long-name entry; the '.' can never occur in
	// base64url, so these never collide with regular cipher names.
	LongNamePrefix = "sealfs.ln."
	// LongNameSuffix marks the side file that holds the full cipher name.
	LongNameSuffix = ".name"
	// DirIDFile is the file in every cipher directory (but the root) holding
	// that directory's ID.
	DirIDFile = "sealfs.dirid"
	// DirIDSize is the size of a directory ID.
	DirIDSize = 16
)

// Name errors.
var (
	ErrNameAuth    = errors.New("cipher name failed authentication")
	ErrNameInvalid = errors.New("invalid file name")
)

var b64 = base64.RawURLEncoding

// decodeCanonical decodes base64url and accepts only the one encoding sealfs
// writes. Go's decoder skips '\r' and '\n', so without this check many
// directory entries (found by FuzzDecryptName: "C\r_Ck…") would decrypt to
// the same name and a listing could show one name twice.
func decodeCanonical(s string) ([]byte, error) {
	raw, err := b64.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if b64.EncodedLen(len(raw)) != len(s) {
		return nil, errors.New("non-canonical base64url")
	}
	return raw, nil
}

// DirID identifies a directory for name encryption.
type DirID [DirIDSize]byte

// RootDirID is the ID of the vault's root directory: all zero, fixed, so the
// root needs no ID file.
var RootDirID DirID

// DeriveDirID computes the ID a directory gets when it is created:
// HMAC-SHA256(dirIDKey, parentID ‖ name)[:16]. Deriving instead of drawing at
// random means two devices that create the same path while offline agree on
// the ID, so a cloud-sync merge of their ID files is a no-op and no name is
// orphaned (the gocryptfs diriv race, gocryptfs#151/#549). The ID is stored
// in the directory and kept across renames, so renaming a directory does not
// re-encrypt its children.
func (k *Keys) DeriveDirID(parent DirID, name string) DirID {
	m := hmac.New(sha256.New, k.key(offDirID))
	m.Write(parent[:])
	m.Write([]byte(name))
	var id DirID
	copy(id[:], m.Sum(nil))
	return id
}

// dirIDFileVersion prefixes the stored ID so the file's format can evolve.
const dirIDFileVersion = 1

// MarshalDirID returns the contents of a DirIDFile: version(2) ‖ ID(16).
func MarshalDirID(id DirID) []byte {
	b := make([]byte, 2+DirIDSize)
	binary.BigEndian.PutUint16(b, dirIDFileVersion)
	copy(b[2:], id[:])
	return b
}

// ParseDirID decodes a DirIDFile.
func ParseDirID(b []byte) (DirID, error) {
	var id DirID
	if len(b) != 2+DirIDSize {
		return id, fmt.Errorf("%w: directory ID file has %d bytes, want %d", ErrFormat, len(b), 2+DirIDSize)
	}
	if v := binary.BigEndian.Uint16(b); v != dirIDFileVersion {
		return id, &VersionError{What: "directory ID file", Have: int(v)}
	}
	copy(id[:], b[2:])
	return id, nil
}

// ValidName reports whether name may be encrypted: a single non-empty path
// component other than "." and "..", without '/' or NUL.
func ValidName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrNameInvalid, name)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes is longer than %d", ErrNameInvalid, len(name), MaxNameLen)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: contains '/' or NUL", ErrNameInvalid)
	}
	return nil
}

// EncryptName encrypts one path component for the directory dir. The result
// may exceed MaxEncodedNameLen; see StoredName.
func (k *Keys) EncryptName(dir DirID, name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return b64.EncodeToString(k.sivSeal(dir[:], []byte(name))), nil
}

// DecryptName reverses EncryptName, authenticating the name against dir.
func (k *Keys) DecryptName(dir DirID, enc string) (string, error) {
	raw, err := decodeCanonical(enc)
	if err != nil {
		return "", fmt.Errorf("%w: not base64url", ErrNameAuth)
	}
	plain, err := k.sivOpen(dir[:], raw)
	if err != nil {
		return "", err
	}
	name := string(plain)
	if ValidName(name) != nil {
		// Authentic but not a name sealfs would write: refuse rather than
		// hand the kernel a '/' or NUL.
		return "", fmt.Errorf("%w: decrypted to an invalid name", ErrNameAuth)
	}
	return name, nil
}

// sivSeal pads plain to a multiple of 16 bytes (PKCS#7 style: n bytes of
// value n, 1 ≤ n ≤ 16) and returns siv ‖ AES-CTR(pad(plain)).
func (k *Keys) sivSeal(ad, plain []byte) []byte {
	pad := namePadBlock - len(plain)%namePadBlock
	out := make([]byte, sivSize+len(plain)+pad)
	body := out[sivSize:]
	copy(body, plain)
	for i := len(plain); i < len(body); i++ {
		body[i] = byte(pad)
	}
	copy(out[:sivSize], k.sivTag(ad, body))
	cipher.NewCTR(k.nameCTR, out[:sivSize]).XORKeyStream(body, body)
	return out
}

func (k *Keys) sivOpen(ad, raw []byte) ([]byte, error) {
	if len(raw) < sivSize+namePadBlock || (len(raw)-sivSize)%namePadBlock != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a sealed name", ErrNameAuth, len(raw))
	}
	body := make([]byte, len(raw)-sivSize)
	cipher.NewCTR(k.nameCTR, raw[:sivSize]).XORKeyStream(body, raw[sivSize:])
	if !equal(k.sivTag(ad, body), raw[:sivSize]) {
		return nil, ErrNameAuth
	}
	pad := int(body[len(body)-1])
	if pad < 1 || pad > namePadBlock {
		return nil, fmt.Errorf("%w: bad padding", ErrNameAuth)
	}
	for _, c := range body[len(body)-pad:] {
		if int(c) != pad {
			return nil, fmt.Errorf("%w: bad padding", ErrNameAuth)
		}
	}
	return body[:len(body)-pad], nil
}

// sivTag is the S2V step: a PRF over (associated data, padded plaintext) with
// the AD length-prefixed so the two can never be confused.
func (k *Keys) sivTag(ad, paddedPlain []byte) []byte {
	m := hmac.New(sha256.New, k.key(offNameMAC))
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(len(ad)))
	m.Write(l[:])
	m.Write(ad)
	m.Write(paddedPlain)
	return m.Sum(nil)[:sivSize]
}

// StoredName maps a cipher name to the directory entry that holds it: the
// name itself when short enough, otherwise LongNamePrefix ‖
// base64url(SHA-256(encName)) with a side file LongNamePrefix‖hash‖".name"
// holding encName. long reports which.
func StoredName(encName string) (stored string, long bool) {
	if len(encName) <= MaxEncodedNameLen {
		return encName, false
	}
	sum := sha256.Sum256([]byte(encName))
	return LongNamePrefix + b64.EncodeToString(sum[:]), true
}

// IsLongName reports whether a directory entry is a long-name entry (and not
// its side file).
func IsLongName(entry string) bool {
	return strings.HasPrefix(entry, LongNamePrefix) && !strings.HasSuffix(entry, LongNameSuffix) &&
		len(entry) == len(LongNamePrefix)+43
}

// ParseLongNameFile checks that the side file content data holds the full
// cipher name whose hash names entry, and returns that cipher name.
func ParseLongNameFile(entry string, data []byte) (string, error) {
	enc := string(data)
	if len(enc) <= MaxEncodedNameLen || len(enc) > 4096 {
		return "", fmt.Errorf("%w: long name file for %s holds %d bytes", ErrFormat, entry, len(data))
	}
	if s, _ := StoredName(enc); s != entry {
		return "", fmt.Errorf("%w: long name file does not match its entry %s", ErrNameAuth, entry)
	}
	return enc, nil
}

// Symlink targets (docs/format.md §6) are not looked up by value, so they use
// randomized AES-256-GCM: base64url(nonce ‖ ct ‖ tag), associated data the
// label below.
const symlinkAD = "sealfs v1 symlink"

// MaxSymlinkTarget keeps the encoded target under PATH_MAX (4096) including
// the base64 expansion of 4/3 and the 28 bytes of nonce and tag.
const MaxSymlinkTarget = 3000

// EncryptSymlink encrypts a symlink target.
func (k *Keys) EncryptSymlink(target string) (string, error) {
	if len(target) == 0 || len(target) > MaxSymlinkTarget {
		return "", fmt.Errorf("%w: symlink target of %d bytes (max %d)", ErrNameInvalid, len(target), MaxSymlinkTarget)
	}
	return b64.EncodeToString(sealRandom(k.symlinkA, []byte(target), []byte(symlinkAD))), nil
}

// DecryptSymlink decrypts a stored symlink target.
func (k *Keys) DecryptSymlink(enc string) (string, error) {
	raw, err := decodeCanonical(enc)
	if err != nil {
		return "", fmt.Errorf("%w: symlink target is not base64url", ErrAuth)
	}
	p, err := openRandom(k.symlinkA, raw, []byte(symlinkAD))
	if err != nil {
		return "", fmt.Errorf("symlink target: %w", err)
	}
	return string(p), nil
}

func sealRandom(a cipher.AEAD, plain, ad []byte) []byte {
	out := make([]byte, NonceSize, NonceSize+len(plain)+TagSize)
	if _, err := rand.Read(out); err != nil {
		// crypto/rand.Read never fails on Linux ≥ 3.17 (getrandom); Go
		// 1.24+ crashes the program itself if it ever does.
		panic(err)
	}
	return a.Seal(out, out, plain, ad)
}

func openRandom(a cipher.AEAD, raw, ad []byte) ([]byte, error) {
	if len(raw) < NonceSize+TagSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrAuth, len(raw))
	}
	p, err := a.Open(nil, raw[:NonceSize], raw[NonceSize:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return p, nil
}

// Extended attributes (docs/format.md §7). Only the user.* namespace is
// offered. The name is encrypted like a file name with associated data
// xattrNameAD (so it is deterministic and getxattr can find it); the value
// is randomized AES-256-GCM with the encrypted name as associated data, so a
// value cannot be moved to another attribute name.
const (
	XattrPrefix       = "user."
	StoredXattrPrefix = "user.sealfs."
	xattrNameAD       = "sealfs v1 xattr name"
)

// maxXattrName is the kernel's XATTR_NAME_MAX.
const maxXattrName = 255

// validXattrName reports whether name is "user." followed by 1 or more
// bytes, none of them NUL, and at most XATTR_NAME_MAX bytes in all: the
// names EncryptXattrName seals and DecryptXattrName returns.
func validXattrName(name string) bool {
	rest, ok := strings.CutPrefix(name, XattrPrefix)
	return ok && rest != "" && len(name) <= maxXattrName && !strings.Contains(rest, "\x00")
}

// EncryptXattrName maps "user.NAME" to "user.sealfs.<sealed NAME>".
func (k *Keys) EncryptXattrName(name string) (string, error) {
	if !validXattrName(name) {
		return "", fmt.Errorf("%w: xattr %q (only user.* is supported)", ErrNameInvalid, name)
	}
	rest := name[len(XattrPrefix):]
	return StoredXattrPrefix + b64.EncodeToString(k.sivSeal([]byte(xattrNameAD), []byte(rest))), nil
}

// DecryptXattrName reverses EncryptXattrName.
func (k *Keys) DecryptXattrName(stored string) (string, error) {
	rest, ok := strings.CutPrefix(stored, StoredXattrPrefix)
	if !ok {
		return "", fmt.Errorf("%w: xattr %q is not sealfs'", ErrNameAuth, stored)
	}
	raw, err := decodeCanonical(rest)
	if err != nil {
		return "", fmt.Errorf("%w: xattr name is not base64url", ErrNameAuth)
	}
	p, err := k.sivOpen([]byte(xattrNameAD), raw)
	if err != nil {
		return "", err
	}
	name := XattrPrefix + string(p)
	if !validXattrName(name) {
		// Authentic but not a name sealfs would write (as in DecryptName):
		// refuse rather than hand the kernel a NUL or an empty name.
		return "", fmt.Errorf("%w: xattr name decrypted to an invalid name", ErrNameAuth)
	}
	return name, nil
}

// EncryptXattrValue seals an attribute value for the stored name.
func (k *Keys) EncryptXattrValue(storedName string, value []byte) []byte {
	return sealRandom(k.xattrA, value, []byte(storedName))
}

// DecryptXattrValue opens an attribute value stored under storedName.
func (k *Keys) DecryptXattrValue(storedName string, raw []byte) ([]byte, error) {
	p, err := openRandom(k.xattrA, raw, []byte(storedName))
	if err != nil {
		return nil, fmt.Errorf("xattr value: %w", err)
	}
	return p, nil
}
