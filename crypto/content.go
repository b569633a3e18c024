package crypto

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
)

// File content format (docs/format.md §4). A cipher file is a header followed
// by one or more blocks; even an empty file has one (empty, final) block, so a
// cipher file cut back to its header, or to nothing, is detected.
const (
	// BlockSize is the plaintext size of every block but the last. 32 KiB
	// was chosen by measurement (docs/format.md §4.3): large enough that the
	// 28-byte overhead and the per-block GCM setup vanish, small enough that a
	// 4 KiB random write or an mmap page flush re-encrypts at most 32 KiB.
	BlockSize = 32 << 10
	// NonceSize and TagSize are AES-256-GCM's.
	NonceSize = 12
	TagSize   = 16
	// BlockOverhead is what each stored block adds to its plaintext.
	BlockOverhead = NonceSize + TagSize
	// CipherBlockSize is the stored size of a full block.
	CipherBlockSize = BlockSize + BlockOverhead
	// FileIDSize is the size of the random per-file identifier.
	FileIDSize = 16
	// FileHeaderSize is magic(4) ‖ version(2) ‖ reserved(2) ‖ file ID(16).
	FileHeaderSize = 8 + FileIDSize
	// ContentVersion is the file header version this code writes and reads.
	ContentVersion = 1
)

var fileMagic = [4]byte{'s', 'l', 'f', 's'}

// Sentinel errors of the content layer. ErrAuth means the bytes were modified
// (or belong elsewhere); ErrTruncated means the file ends where it cannot.
var (
	ErrAuth      = errors.New("authentication failed")
	ErrTruncated = errors.New("cipher file is truncated")
	ErrFormat    = errors.New("not a sealfs cipher file")
)

// VersionError reports a format version this build does not understand.
type VersionError struct {
	What string
	Have int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s uses format version %d, which this sealfs does not know; upgrade sealfs", e.What, e.Have)
}

// FileID identifies one cipher file; it is bound into every block's
// associated data so blocks cannot move between files.
type FileID [FileIDSize]byte

// FileHeader is the fixed prefix of every cipher file.
type FileHeader struct {
	ID FileID
}

// NewFileHeader draws a random file ID.
func NewFileHeader() (FileHeader, error) {
	var h FileHeader
	if _, err := rand.Read(h.ID[:]); err != nil {
		return h, fmt.Errorf("generating file ID: %w", err)
	}
	return h, nil
}

// Marshal returns the header's FileHeaderSize bytes.
func (h FileHeader) Marshal() []byte {
	b := make([]byte, FileHeaderSize)
	copy(b, fileMagic[:])
	binary.BigEndian.PutUint16(b[4:], ContentVersion)
	// b[6:8] reserved, zero.
	copy(b[8:], h.ID[:])
	return b
}

// ParseFileHeader decodes the first FileHeaderSize bytes of b.
func ParseFileHeader(b []byte) (FileHeader, error) {
	var h FileHeader
	if len(b) < FileHeaderSize {
		if len(b) == 0 {
			return h, fmt.Errorf("%w: empty cipher file", ErrTruncated)
		}
		return h, fmt.Errorf("%w: header has %d of %d bytes", ErrTruncated, len(b), FileHeaderSize)
	}
	if [4]byte(b[:4]) != fileMagic {
		return h, fmt.Errorf("%w: bad magic %x", ErrFormat, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != ContentVersion {
		return h, &VersionError{What: "cipher file", Have: int(v)}
	}
	if b[6] != 0 || b[7] != 0 {
		return h, fmt.Errorf("%w: reserved header bytes are %x, want 0000", ErrFormat, b[6:8])
	}
	copy(h.ID[:], b[8:FileHeaderSize])
	return h, nil
}

// FileCipher seals and opens the blocks of one file.
type FileCipher struct {
	aead cipher.AEAD
	id   FileID
}

// FileCipher derives the per-file key HKDF-SHA256(contentKey, salt=fileID,
// info="sealfs v1 file key"). A per-file key keeps the random-nonce budget of
// AES-GCM (2^32 messages per key) per file rather than per vault.
func (k *Keys) FileCipher(h FileHeader) (*FileCipher, error) {
	var key [KeySize]byte
	defer clear(key[:])
	if err := hkdfInto(key[:], k.key(offContent), h.ID[:], labelFileKey); err != nil {
		return nil, err
	}
	a, err := newGCM(key[:])
	if err != nil {
		return nil, err
	}
	return &FileCipher{aead: a, id: h.ID}, nil
}

// blockAD is fileID(16) ‖ blockIndex(8, big endian) ‖ final(1).
func (c *FileCipher) blockAD(ad *[FileIDSize + 9]byte, index uint64, final bool) {
	copy(ad[:], c.id[:])
	binary.BigEndian.PutUint64(ad[FileIDSize:], index)
	ad[FileIDSize+8] = 0
	if final {
		ad[FileIDSize+8] = 1
	}
}

// SealBlock appends nonce ‖ ciphertext ‖ tag of plain to dst. final marks the
// file's last block; plain must be BlockSize bytes unless final. Like
// cipher.AEAD.Seal, it writes into dst's spare capacity when that holds
// len(plain)+BlockOverhead bytes (no allocation), and plain may overlap that
// space exactly at dst[len(dst)+NonceSize:], so callers can seal in place.
func (c *FileCipher) SealBlock(dst, plain []byte, index uint64, final bool) ([]byte, error) {
	if len(plain) > BlockSize || (!final && len(plain) != BlockSize) {
		return nil, fmt.Errorf("sealing block %d: %d plaintext bytes (final=%v)", index, len(plain), final)
	}
	var ad [FileIDSize + 9]byte
	c.blockAD(&ad, index, final)
	n := len(dst)
	dst = growSlice(dst, NonceSize)
	if _, err := rand.Read(dst[n:]); err != nil {
		return nil, fmt.Errorf("block nonce: %w", err)
	}
	return c.aead.Seal(dst, dst[n:n+NonceSize], plain, ad[:]), nil
}

// OpenBlock authenticates and decrypts one stored block, appending the
// plaintext to dst. A failure wraps ErrAuth.
func (c *FileCipher) OpenBlock(dst, block []byte, index uint64, final bool) ([]byte, error) {
	if len(block) < BlockOverhead || len(block) > CipherBlockSize || (!final && len(block) != CipherBlockSize) {
		return nil, fmt.Errorf("%w: block %d has %d bytes", ErrTruncated, index, len(block))
	}
	var ad [FileIDSize + 9]byte
	c.blockAD(&ad, index, final)
	out, err := c.aead.Open(dst, block[:NonceSize], block[NonceSize:], ad[:])
	if err != nil {
		return nil, fmt.Errorf("%w: block %d", ErrAuth, index)
	}
	return out, nil
}

func growSlice(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// NumBlocks is the number of stored blocks of a file of plainSize bytes: at
// least one, since an empty file still carries its final block.
func NumBlocks(plainSize int64) int64 {
	if plainSize <= 0 {
		return 1
	}
	return (plainSize + BlockSize - 1) / BlockSize
}

// CipherSize is the size of the cipher file holding plainSize bytes.
func CipherSize(plainSize int64) int64 {
	return FileHeaderSize + NumBlocks(plainSize)*BlockOverhead + plainSize
}

// PlainSize inverts CipherSize. A size no plaintext maps to means the cipher
// file was truncated or extended by something other than sealfs.
func PlainSize(cipherSize int64) (int64, error) {
	body := cipherSize - FileHeaderSize
	if body < BlockOverhead {
		return 0, fmt.Errorf("%w: %d bytes cannot hold a header and a block", ErrTruncated, cipherSize)
	}
	n := (body + CipherBlockSize - 1) / CipherBlockSize
	last := body - (n-1)*CipherBlockSize
	if last < BlockOverhead || (last == BlockOverhead && n > 1) {
		return 0, fmt.Errorf("%w: last block has %d bytes", ErrTruncated, last)
	}
	return body - n*BlockOverhead, nil
}

// BlockOffset is where block index starts in the cipher file.
func BlockOffset(index int64) int64 {
	return FileHeaderSize + index*CipherBlockSize
}
