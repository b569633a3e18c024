package offline

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// BadBlock is a block that did not authenticate.
type BadBlock struct {
	Index int64
	Err   error
}

// errShrunk: the file got shorter while it was read (a sync client or a
// mount writing it now).
var errShrunk = errors.New("the file changed while being read")

// readBlocks is how many stored blocks one pread fetches: 1 MiB, so a large
// file costs one system call per 32 blocks and a small one a single call.
const readBlocks = 32

// decrypter reads whole cipher files; its buffers are reused from file to
// file, grown to what the largest file so far needed (at most one run).
type decrypter struct {
	keys  *crypto.Keys
	buf   []byte // a header's room, then stored blocks
	plain []byte // their plaintext
}

func newDecrypter(keys *crypto.Keys) *decrypter { return &decrypter{keys: keys} }

// grow makes room for a file of size cipher bytes.
func (d *decrypter) grow(size int64) {
	n := min(max(size, crypto.FileHeaderSize), crypto.BlockOffset(readBlocks))
	if int64(len(d.buf)) < n {
		d.buf = make([]byte, n)
		d.plain = make([]byte, 0, max(n-crypto.FileHeaderSize, 0))
	}
}

// file reads the cipher file open at fd, size bytes long (its fstat),
// block by block, calling out with the plaintext of runs of blocks: each
// authenticated block's own, zeros for each block that fails, so that a
// restore salvages everything that is still good. It returns the plaintext
// size written, the failed blocks, and a file-level error (unreadable
// header, a size that maps to no plaintext, a read error). Every cut point
// of a file is one of these (docs/format.md §4.2): 0 bytes or a cut header
// fail the header; a cut that leaves the last block shorter than a block
// can be is a size error naming that block, after the whole blocks before
// it were salvaged; any other cut fails the tag of the new last block
// (named, and told apart from a cut at a block boundary by diagnose).
// progress gets the cipher bytes of each block.
func (d *decrypter) file(fd int, size int64, out func(p []byte) error, progress func(int64)) (int64, []BadBlock, error) {
	// The header comes with the first run of blocks (one pread for a
	// small file); the blocks of every run sit at buf[FileHeaderSize:].
	d.grow(size)
	n, err := preadFull(fd, d.buf[:min(int64(len(d.buf)), size)], 0)
	if err != nil {
		return 0, nil, fmt.Errorf("reading header: %w", err)
	}
	h, err := crypto.ParseFileHeader(d.buf[:min(n, crypto.FileHeaderSize)])
	if err != nil {
		return 0, nil, err
	}
	fc, err := d.keys.FileCipher(h)
	if err != nil {
		return 0, nil, err
	}
	plainSize, sizeErr := crypto.PlainSize(size)
	nblocks := crypto.NumBlocks(plainSize)
	if sizeErr != nil {
		// Salvage the whole blocks that are there, opened as non-final:
		// the block the cut fell in is the file-level error.
		body := size - crypto.FileHeaderSize
		nblocks = max(body/crypto.CipherBlockSize, 0)
		plainSize = nblocks * crypto.BlockSize
		sizeErr = fmt.Errorf("%w: cut inside block %d, which keeps %d bytes (a block is stored with 29 to %d bytes, 28 only in an empty file)",
			crypto.ErrTruncated, nblocks, body-nblocks*crypto.CipherBlockSize, crypto.CipherBlockSize)
	}
	var bad []BadBlock
	got := int64(n) - crypto.FileHeaderSize
	for run := int64(0); run < nblocks; run += readBlocks {
		last := min(run+readBlocks, nblocks) // exclusive
		want := min(crypto.BlockOffset(last), size) - crypto.BlockOffset(run)
		chunk := d.buf[crypto.FileHeaderSize : crypto.FileHeaderSize+want]
		if run > 0 {
			m, err := preadFull(fd, chunk, crypto.BlockOffset(run))
			if err != nil {
				return plainSize, bad, fmt.Errorf("reading blocks %d–%d: %w", run, last-1, err)
			}
			got = int64(m)
		}
		if got < want {
			// The file shrank since its fstat (a sync in progress).
			return plainSize, bad, fmt.Errorf("%w: %w: it ended at byte %d while being read (it was %d bytes)",
				crypto.ErrTruncated, errShrunk, crypto.BlockOffset(run)+got, size)
		}
		plain := d.plain[:0]
		for i := run; i < last; i++ {
			off := (i - run) * crypto.CipherBlockSize
			stored := chunk[off:min(off+crypto.CipherBlockSize, want)]
			final := i == nblocks-1 && sizeErr == nil
			p, err := fc.OpenBlock(plain, stored, uint64(i), final)
			if err != nil {
				var derr error
				p, derr = diagnose(fc, plain, stored, i, final, err)
				bad = append(bad, BadBlock{Index: i, Err: derr})
			}
			plain = p
			if progress != nil {
				progress(int64(len(stored)))
			}
		}
		if out != nil {
			if err := out(plain); err != nil {
				return plainSize, bad, err
			}
		}
	}
	return plainSize, bad, sizeErr
}

// diagnose tells truncation and extension apart from tampering: a last block
// that opens when taken as non-final means the file was cut at a block
// boundary; a non-final block that opens as final means bytes were appended
// after the real end. Either way the block itself is authentic and its
// plaintext is kept; a block that opens neither way becomes zeros (as many
// as its stored size stands for). It returns plain extended by the block.
func diagnose(fc *crypto.FileCipher, plain, stored []byte, i int64, final bool, err error) ([]byte, error) {
	if p, e := fc.OpenBlock(plain, stored, uint64(i), !final); e == nil {
		if final {
			return p, fmt.Errorf("%w: the file was cut after block %d (that block is intact and kept)", crypto.ErrTruncated, i)
		}
		return p, fmt.Errorf("%w: block %d was the last block; data was appended after it", crypto.ErrAuth, i)
	}
	return append(plain, make([]byte, max(len(stored)-crypto.BlockOverhead, 0))...), err
}

// preadFull reads len(b) bytes at off, or fewer at the end of the file.
func preadFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil
		}
		n += m
	}
	return n, nil
}
