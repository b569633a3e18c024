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
	if off >= f.size {
		return 0, f.endErr()
	}
	want := int(min(int64(len(p)), f.size-off))
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

// readRun reads blocks i..j with one pread, opens each in place and copies
// the part of it that lies at or after pos into p.
func (f *File) readRun(p []byte, pos, i, j int64) (int, error) {
	bp := getBatch()
	defer putBatch(bp)
	start := crypto.BlockOffset(i)
	end := crypto.BlockOffset(j) + int64(plainLen(j, f.size)) + crypto.BlockOverhead
	buf := (*bp)[:end-start]
	got, err := f.pread(buf, start)
	if err != nil {
		return 0, err
	}
	done := 0
	for k := i; k <= j; k++ {
		lo := (k - i) * cbs
		hi := min(lo+cbs, int64(got))
		plain, err := f.openInPlace(buf[lo:max(lo, hi)], k)
		if err != nil {
			return done, err
		}
		skip := max(0, pos-k*bs)
		done += copy(p[done:], plain[skip:])
	}
	return done, nil
}
