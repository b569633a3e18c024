package cipherfile

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
	"golang.org/x/sys/unix"
)

// Truncate sets the plaintext size. Growth stores encrypted zero blocks
// (streamed, bounded memory); shrinking re-seals the new last block as final;
// emptying a file gives it a new file ID (writeEmpty). Truncate always
// flushes before it returns (also to the same size), so the cipher file's
// size, which getattr of unopened files reads, is right at once. Truncating
// a damaged file to less than its Size repairs it.
func (f *File) Truncate(size int64) (err error) {
	if size < 0 || size > maxSize {
		return fmt.Errorf("cipherfile: truncate to %d: %w", size, syscall.EINVAL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.settleOnError(&err)
	if err := f.checkWritable(); err != nil {
		return err
	}
	switch {
	case size == 0 && (f.size > 0 || f.damaged || f.diskSize != crypto.CipherSize(0)):
		if err := f.drain(); err != nil {
			return err
		}
		return f.writeEmpty(true)
	case size > f.size && f.damaged:
		return f.damagedErr()
	case size > f.size:
		if err := f.grow(size); err != nil {
			return err
		}
	case size < f.size || f.damaged:
		if err := f.shrink(size); err != nil {
			return err
		}
	}
	return f.flushLocked()
}

// Allocate has fallocate mode 0 semantics: it extends the file with zeros if
// off+length lies beyond the end. The cipher file has no holes, so space
// inside the file is allocated already.
func (f *File) Allocate(off, length int64) (err error) {
	if off < 0 || length <= 0 || off > maxSize-length {
		return fmt.Errorf("cipherfile: allocate %d bytes at %d: %w", length, off, syscall.EINVAL)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.settleOnError(&err)
	if err := f.checkWritable(); err != nil {
		return err
	}
	end := off + length
	if end <= f.size {
		return nil
	}
	if f.damaged {
		return f.damagedErr()
	}
	if err := f.grow(end); err != nil {
		return err
	}
	return f.flushLocked()
}

func (f *File) grow(size int64) error {
	if err := f.reserve(size); err != nil {
		return err
	}
	return f.apply(nil, size, size)
}

// shrink makes block lastBlock(size) the tail, cut to its new length. Its
// plaintext must authenticate: re-sealing unverified bytes as final would
// launder a corruption into a valid file.
func (f *File) shrink(size int64) error {
	newLast := lastBlock(size)
	n := plainLen(newLast, size)
	switch {
	case newLast == lastBlock(f.size) && f.tailValid:
		// the tail already holds the block
	case n == 0:
		// an empty file: nothing of the old block survives
	default:
		bp := getBlock()
		defer putBlock(bp)
		plain, err := f.loadBlock(bp, newLast)
		if err != nil {
			return fmt.Errorf("cipherfile: truncating %s to %d: %w", f.Path(), size, err)
		}
		if f.tail == nil {
			f.tail = f.newTail()
		}
		f.tail = append(f.tail[:0], plain[:n]...)
	}
	if f.tail == nil {
		f.tail = f.newTail()
	}
	f.tail = f.tail[:n]
	f.size = size
	f.tailValid, f.tailDirty, f.damaged = true, true, false
	return nil
}

// reserve allocates the cipher range a file of newSize plaintext bytes needs
// beyond what is allocated, without changing the file size, so that a full
// disk fails here, before any byte is written (no torn block). Filesystems
// without fallocate are written to unreserved.
func (f *File) reserve(newSize int64) error {
	want := crypto.CipherSize(newSize)
	if f.noFalloc || want <= f.reserved {
		return nil
	}
	from := f.reserved
	for {
		err := unix.Fallocate(f.sysfd, unix.FALLOC_FL_KEEP_SIZE, from, want-from)
		switch {
		case err == nil:
			f.reserved = want
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			f.noFalloc = true
			return nil
		default:
			return fmt.Errorf("cipherfile: reserving %d bytes of %s: %w", want-from, f.Path(), err)
		}
	}
}
