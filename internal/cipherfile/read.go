package cipherfile

import (
	"fmt"
	"io"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
)

// ReadAt reads len(p) plaintext bytes at off, like os.File.ReadAt: fewer bytes
// come with io.EOF at the end of the file. Only authenticated bytes are
// returned: a block failing authentication ends the read there with an error
// wrapping crypto.ErrAuth (or crypto.ErrTruncated), n counting the good bytes
// before it. In damaged mode, reading at or past Size fails with
// crypto.ErrTruncated instead of io.EOF.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("cipherfile: read at negative offset %d: %w", off, syscall.EINVAL)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, f.closedErr()
	}
	if len(p) == 0 {
		return 0, nil // as os.File.ReadAt
	}
	f.waitWrites()
	if off >= f.size {
		return 0, f.endErr()
	}
	want := int(min(int64(len(p)), f.size-off))
	f.readAhead(off, want)
	n, err := f.readLocked(p[:want], off)
	if err == nil && n < len(p) {
		err = f.endErr()
	}
	return n, err
}

func (f *File) endErr() error {
	if f.damaged {
		err := f.damagedErr()
		f.logBlock(f.size/bs, err)
		return err
	}
	return io.EOF
}

// readLocked fills p (which lies within the file) from the tail and from runs
// of disk blocks, one pread per run of up to batchBlocks blocks.
func (f *File) readLocked(p []byte, off int64) (int, error) {
	last := lastBlock(f.size)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		i := pos / bs
		if i == last && f.tailValid {
			done += copy(p[done:], f.tail[pos-i*bs:])
			continue
		}
		j := min((off+int64(len(p))-1)/bs, i+batchBlocks-1)
		if j == last && f.tailValid {
			j--
		}
		n, err := f.readRun(p[done:], pos, i, j)
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// readRun reads blocks i..j with one pread, then authenticates them in
// parallel: blocks p covers entirely are decrypted straight into p, the
// others in place and copied. It returns the bytes before the first bad block.
func (f *File) readRun(p []byte, pos, i, j int64) (int, error) {
	bt := getBatch()
	defer putBatch(bt)
	start := crypto.BlockOffset(i)
	end := crypto.BlockOffset(j) + int64(plainLen(j, f.size)) + crypto.BlockOverhead
	buf := bt.buf[:end-start]
	got, err := f.pread(buf, start)
	if err != nil {
		return 0, err
	}
	buf = buf[:got]
	nb := int(j - i + 1)
	parallel(nb, func(lo, hi int) {
		for b := lo; b < hi; b++ {
			bt.errs[b] = f.openInto(p, pos, i+int64(b), buf[min(b*cbs, got):min((b+1)*cbs, got)])
		}
	})
	for b, err := range bt.errs[:nb] {
		if err != nil {
			f.logBlock(i+int64(b), err)
			return int(max(0, (i+int64(b))*bs-pos)), err
		}
	}
	return int(min(int64(len(p)), (j+1)*bs-pos)), nil
}

// openInto authenticates block k (stored bytes cb) and places the part of its
// plaintext that lies in [pos, pos+len(p)) into p.
func (f *File) openInto(p []byte, pos, k int64, cb []byte) error {
	lo := k*bs - pos // where the block starts relative to p
	n := int64(plainLen(k, f.size))
	if lo >= 0 && lo+n <= int64(len(p)) {
		_, err := f.openBlock(p[lo:lo:lo+n], cb, k)
		return err
	}
	plain, err := f.openBlock(cb[crypto.NonceSize:crypto.NonceSize], cb, k)
	if err != nil {
		return err
	}
	copy(p[max(0, lo):], plain[max(0, -lo):])
	return nil
}
