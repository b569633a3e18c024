package cipherfile

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/sealfs/sealfs/crypto"
)

const (
	bs  = crypto.BlockSize
	cbs = crypto.CipherBlockSize
	// batchBlocks cipher blocks (~1 MiB) go into one pread or pwrite: large
	// enough that syscall cost vanishes next to the copy and the crypto,
	// small enough to stay in L2/L3 between sealing and writing.
	batchBlocks = 32
)

// Pooled buffers keep the steady state free of per-call allocation. Each
// holds whole cipher blocks: plaintext is placed at the block's nonce offset
// and sealed or opened in place, so data is copied once per direction.
var (
	batchPool = sync.Pool{New: func() any { b := make([]byte, batchBlocks*cbs); return &b }}
	blockPool = sync.Pool{New: func() any { b := make([]byte, cbs); return &b }}
)

func getBatch() *[]byte  { return batchPool.Get().(*[]byte) }
func putBatch(b *[]byte) { batchPool.Put(b) }
func getBlock() *[]byte  { return blockPool.Get().(*[]byte) }
func putBlock(b *[]byte) { blockPool.Put(b) }

// lastBlock is the index of the last block of a file of size bytes.
func lastBlock(size int64) int64 { return crypto.NumBlocks(size) - 1 }

// plainLen is the plaintext length of block i of a file of size bytes.
func plainLen(i, size int64) int { return int(min(bs, max(0, size-i*bs))) }

// isFinal tells whether block i is sealed final on disk. In damaged mode the
// last intact block was sealed non-final: its successor is the damaged one.
func (f *File) isFinal(i int64) bool { return !f.damaged && i == lastBlock(f.size) }

// pwrite writes all of b at off and keeps the size bookkeeping.
func (f *File) pwrite(b []byte, off int64) error {
	n, err := f.fd.WriteAt(b, off)
	f.stats.pwrites++
	f.stats.bytesWritten += int64(n)
	if end := off + int64(n); end > f.diskSize {
		f.diskSize = end
		f.reserved = max(f.reserved, end)
	}
	if err != nil {
		return fmt.Errorf("cipherfile: writing %d bytes at %d of %s: %w", len(b), off, f.Path(), err)
	}
	return nil
}

// pread fills b from off; a short result is not an error here (the caller
// checks each block against what arrived).
func (f *File) pread(b []byte, off int64) (int, error) {
	n, err := f.fd.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("cipherfile: reading %s at %d: %w", f.Path(), off, err)
	}
	return n, nil
}

// openInPlace authenticates block i held in cb (nonce ‖ ct ‖ tag) and returns
// its plaintext, which overwrites cb from the nonce offset on. An error is
// logged once, naming the path and block.
func (f *File) openInPlace(cb []byte, i int64) ([]byte, error) {
	final := f.isFinal(i)
	want := plainLen(i, f.size) + crypto.BlockOverhead
	if len(cb) < want {
		err := fmt.Errorf("cipherfile: %s: %w: block %d has %d of %d bytes", f.Path(), crypto.ErrTruncated, i, len(cb), want)
		f.logBlock(i, err)
		return nil, err
	}
	p, err := f.fc.OpenBlock(cb[crypto.NonceSize:crypto.NonceSize], cb[:want], uint64(i), final)
	if err != nil {
		err = f.diagnose(i, final, err)
		f.logBlock(i, err)
		return nil, fmt.Errorf("cipherfile: %s: %w", f.Path(), err)
	}
	return p, nil
}

// diagnose refines an authentication failure of the last block: if it opens
// as a non-final block, the file was cut at a block boundary (typically a
// crash before Flush), which is reported as truncation, not tampering. The
// failed in-place open wiped the buffer, so the block is read again.
func (f *File) diagnose(i int64, final bool, err error) error {
	if !final || plainLen(i, f.size) != bs {
		return err
	}
	bp := getBlock()
	defer putBlock(bp)
	cb := (*bp)[:cbs]
	if n, rerr := f.pread(cb, crypto.BlockOffset(i)); rerr != nil || n != cbs {
		return err
	}
	if _, oerr := f.fc.OpenBlock(cb[crypto.NonceSize:crypto.NonceSize], cb, uint64(i), false); oerr == nil {
		return fmt.Errorf("%w: block %d is intact but not the final block: the file was cut at a block boundary",
			crypto.ErrTruncated, i)
	}
	return err
}

func (f *File) logBlock(i int64, err error) {
	f.log.Error("cipher block unreadable", "path", f.Path(), "block", i, "err", err)
}

// loadBlock reads and authenticates block i from disk into the block buffer
// *bp and returns its plaintext (a sub-slice of *bp).
func (f *File) loadBlock(bp *[]byte, i int64) ([]byte, error) {
	want := plainLen(i, f.size) + crypto.BlockOverhead
	cb := (*bp)[:want]
	n, err := f.pread(cb, crypto.BlockOffset(i))
	if err != nil {
		return nil, err
	}
	return f.openInPlace(cb[:n], i)
}
