package cipherfile

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// Write-behind. A batch of sealed blocks is written by a goroutine while the
// WriteAt that sealed it returns, so the next FUSE write request travels to
// the daemon and is sealed while the previous one is copied into the backing
// file. A full batch also starts the backing file's writeback for its range
// (sync_file_range WRITE, which does not wait for the disk), so a closing
// fsync finds most of the data on its way instead of starting the whole
// transfer then. 1 GiB through the mount, medians of 3-4 runs on a fresh
// ext4 (this VM): without fsync 1.38 s inline, 1.04 s behind; with fsync
// 2.07 s, 1.80 s (plain ext4 in the same runs: 1.83 s).
//
// At most one batch per File is in flight. Everything that reads the backing
// file or depends on it being complete waits for it first: ReadAt (shared
// lock: waitWrites), and under the exclusive lock the next submit, loadBlock,
// flushLocked (so Flush, Sync, Truncate, Allocate and Close). A failed
// background write is reported by the next of those and leaves the File
// failed, as a write that fails after bytes reached the disk always did
// (see fail). On a filesystem that writes in place it cannot be ENOSPC:
// the range was reserved before sealing (reserve). Without fallocate on the
// backing filesystem, where ENOSPC is possible, batches are written inline
// so that the writer sees it. On a copy-on-write filesystem (btrfs, XFS
// with reflinks) an overwrite of reserved space can still run out of space,
// and an I/O error can happen anywhere: such a failure reaches the program
// at its next write, fsync or close, not at the write it belongs to, as a
// writeback error does on any page-cache filesystem.
//
// A batch that overwrites the block sealed final on disk (the first batch of
// a write extending a flushed file) is written inline too: once an extending
// write has returned, the backing file must not end in a valid final block
// until the next Flush, so that a crash leaves a file that reads as
// truncated rather than an older version that looks complete (package doc,
// Crash semantics). Later batches of a sequential writer follow non-final
// blocks already on disk, and are written behind.

// kickBytes: batches at least this large (a full batch, ~1 MiB) start
// writeback of their range; smaller ones are random rewrites, left to the
// kernel's own writeback.
const kickBytes = batchBlocks * cbs

// submit writes buf (which lives in bt; whole blocks from block first on),
// behind the caller's back
// unless the filesystem lacks fallocate. bt belongs to the write-behind from
// here on; the drain that collects it returns it to the pool. The caller
// holds f.mu exclusively.
func (f *File) submit(bt *batch, buf []byte, first int64) error {
	if err := f.drain(); err != nil {
		putBatch(bt)
		return err
	}
	off := crypto.BlockOffset(first)
	last := first + int64(len(buf)/cbs) - 1
	if f.noFalloc || (f.finalOnDisk >= first && f.finalOnDisk <= last) {
		defer putBatch(bt)
		if err := f.pwrite(buf, off); err != nil {
			return err
		}
		if f.finalOnDisk >= first && f.finalOnDisk <= last {
			f.finalOnDisk = -1
		}
		return nil
	}
	f.stats.pwrites++
	f.stats.bytesWritten += int64(len(buf))
	if end := off + int64(len(buf)); end > f.diskSize {
		f.diskSize = end
		f.reserved = max(f.reserved, end)
	}
	bt.behind.err = nil
	bt.behind.wg.Add(1)
	f.wb = bt
	go f.writeBehind(bt, buf, off)
	return nil
}

func (f *File) writeBehind(bt *batch, buf []byte, off int64) {
	defer bt.behind.wg.Done()
	if _, err := f.fd.WriteAt(buf, off); err != nil {
		bt.behind.err = fmt.Errorf("cipherfile: writing %d bytes at %d of %s: %w", len(buf), off, f.Path(), err)
		return
	}
	if len(buf) >= kickBytes {
		// Advisory: an error here would resurface at fsync.
		_ = unix.SyncFileRange(f.sysfd, off, int64(len(buf)), unix.SYNC_FILE_RANGE_WRITE)
	}
}

// drain waits for the batch in flight, if any, returns it to the pool and
// returns its failure. The caller holds f.mu exclusively.
func (f *File) drain() error {
	bt := f.wb
	if bt == nil {
		return nil
	}
	bt.behind.wg.Wait()
	err := bt.behind.err
	f.wb = nil
	putBatch(bt)
	if err != nil {
		return f.fail(err)
	}
	return nil
}

// settleOnError waits for the batch in flight when a mutating call fails, so
// that a failure is reported with the backing file at rest: a caller (or a
// test) that looks at it after ENOSPC sees exactly what the earlier,
// successful writes left, not a batch still landing. Its own error, if any,
// is already recorded by drain (fail) for the next call.
func (f *File) settleOnError(err *error) {
	if *err != nil {
		_ = f.drain()
	}
}

// waitWrites waits for the batch in flight without collecting it (the next
// drain reports its error). For readers holding f.mu shared, which keeps
// drain, and so the batch's reuse, away.
func (f *File) waitWrites() {
	if bt := f.wb; bt != nil {
		bt.behind.wg.Wait()
	}
}
