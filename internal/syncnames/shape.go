package syncnames

import (
	"strings"

	"github.com/sealfs/sealfs/crypto"
)

// Kind is what a directory entry's name says it is in a cipher folder, from
// its shape alone (docs/format.md §2). Only decryption proves it.
type Kind uint8

const (
	// NotSealfs is a name sealfs never writes.
	NotSealfs Kind = iota
	// CipherName is a regular stored name: canonical base64url of
	// siv(16) ‖ ciphertext(16·k) bytes, at most crypto.MaxEncodedNameLen
	// characters (format.md §5.1), so one of nine lengths from 43 to 214.
	CipherName
	// LongName is "sealfs.ln." followed by a canonical base64url SHA-256
	// (43 characters) (format.md §5.3).
	LongName
	// LongNameSide is a long name's side file: LongName + ".name".
	LongNameSide
	// VaultHeader is "sealfs.vault" (format.md §3).
	VaultHeader
	// VaultHeaderTemp is "sealfs.vault.tmp-*", left while the header is
	// replaced atomically (format.md §3).
	VaultHeaderTemp
	// DirID is "sealfs.dirid" (format.md §5.2).
	DirID
)

var kindNames = [...]string{"not sealfs", "cipher name", "long name", "long-name side file", "vault header",
	"vault header temp file", "directory ID file"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown kind"
}

// Raw sizes of a sealed name (crypto/names.go): a 16-byte SIV, then the name
// padded to a multiple of 16 bytes, at least one block.
const (
	sealedMin  = 32
	sealedStep = 16
	sha256Len  = 43 // base64url of 32 bytes, unpadded
)

// Shape classifies name by its form. It is cheap (no allocation) because the
// mount and fsck call it on every entry of every listing.
func Shape(name string) Kind {
	if isCipherName(name) {
		return CipherName
	}
	if !strings.HasPrefix(name, "sealfs.") {
		return NotSealfs
	}
	switch {
	case name == crypto.HeaderFileName:
		return VaultHeader
	case name == crypto.DirIDFile:
		return DirID
	case strings.HasPrefix(name, crypto.HeaderFileName+".tmp-"):
		return VaultHeaderTemp
	}
	rest, ok := strings.CutPrefix(name, crypto.LongNamePrefix)
	if !ok {
		return NotSealfs
	}
	if side, ok := strings.CutSuffix(rest, crypto.LongNameSuffix); ok && isB64(side, 32) {
		return LongNameSide
	}
	if isB64(rest, 32) {
		return LongName
	}
	return NotSealfs
}

// IsStored reports whether name has the shape of an entry sealfs writes.
func IsStored(name string) bool { return Shape(name) != NotSealfs }

// isCipherName reports whether s is canonical base64url of 32, 48, …, 160
// bytes whose encoding fits crypto.MaxEncodedNameLen.
func isCipherName(s string) bool {
	if len(s) < sha256Len || len(s) > crypto.MaxEncodedNameLen {
		return false
	}
	n := len(s) * 6 / 8 // bytes the encoding holds
	if n < sealedMin || (n-sealedMin)%sealedStep != 0 {
		return false
	}
	return isB64(s, n)
}

// isB64 reports whether s is the canonical unpadded base64url encoding of n
// bytes: the right length, only the 64 letters, and zero unused low bits in
// the last letter (the check base64.Strict makes; crypto.decodeCanonical
// rejects anything else, so nothing else can be a stored name).
func isB64(s string, n int) bool {
	if len(s) != (n*8+5)/6 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b64Value(s[i]) < 0 {
			return false
		}
	}
	spare := len(s)*6 - n*8 // 0, 2 or 4 unused bits
	return b64Value(s[len(s)-1])&(1<<spare-1) == 0
}

func b64Value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}
