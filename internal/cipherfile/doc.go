// Package cipherfile is the content engine under the FUSE layer: one cipher
// file (crypto's content format, docs/format.md §4) opened for random-access
// plaintext reads and writes on a backing *os.File.
//
// # The tail
//
// Only a file's last block may be sealed with the final flag, and a
// sequential writer must not cause each block to be written twice. So a File
// keeps its current last block's plaintext in memory (the tail). Blocks before
// the tail are sealed non-final and written as soon as a write completes them;
// the tail is sealed final and written by Flush, Sync, Close and Truncate, or
// sealed non-final and written together with the following blocks when a later
// write extends the file past it. Reads of the tail are served from memory.
// A sequential writer therefore writes every block exactly once (tested).
//
// # Crash semantics
//
// Between a write and the next Flush the on-disk file may lack its final
// block: after a crash it then reads as truncated (ErrTruncated or ErrAuth on
// its last block), and fsck reports it, rather than silently presenting a
// shorter file as complete. Blocks written before the crash stay readable
// through the damaged-file mode below. A write that does not extend the file
// replaces whole blocks in place; an overwrite interrupted by a crash can
// leave one block unauthenticated (the usual torn-write risk, bounded to the
// blocks of that write). After Flush returns, the on-disk file is complete
// and decrypts with crypto.DecryptReader to exactly the File's contents.
//
// A write may return while its last batch is still being written to the
// backing file (write-behind, behind.go); a crash of the daemon then loses
// that batch as it loses the tail, and the file still reads as truncated:
// the batch that rewrites a final block on disk as non-final is never
// written behind.
//
// # Holes
//
// Writes beyond the end and Truncate/Allocate growth store encrypted zero
// blocks. An all-zero cipher block is never read as a hole: accepting one
// would let anyone who can write the cloud folder zero out data undetected
// (integrity first; the format decision of docs/format.md). Growth is streamed
// through one pooled batch buffer, so memory stays bounded for any size.
//
// # Damaged files
//
// A cipher file whose size maps to no plaintext size (crypto.PlainSize fails:
// something cut or extended it) still opens, so its intact prefix can be
// salvaged: Size reports the plaintext of the complete blocks before the
// damaged one, reads of those succeed, and reads at or past Size fail with an
// error wrapping crypto.ErrTruncated instead of io.EOF. Writes fail (wrapping
// crypto.ErrTruncated) until the file is repaired by Truncate to at most Size,
// which re-seals the new last block as final.
//
// # Errors and ENOSPC
//
// A block that fails authentication fails only the reads (and the writes that
// need its old contents) touching it, with an error wrapping crypto.ErrAuth,
// and one log line naming the cipher path and block index. Before any write
// that extends the cipher file, the new range is reserved with
// fallocate(FALLOC_FL_KEEP_SIZE), so a full disk fails the call with
// syscall.ENOSPC before any byte is written and leaves the File unchanged.
// A write error after bytes reached the disk (an I/O error, or ENOSPC on a
// filesystem without fallocate) leaves disk and memory out of step; the File
// then refuses further writes and flushes with that error (reads go on).
//
// # Locking
//
// One sync.RWMutex per File. Reads hold it shared (they only pread and
// decrypt into per-call pooled buffers, and copy from the tail); writes,
// Truncate, Allocate and Flush hold it exclusively for the whole operation, so
// a reader never sees a half-written block or a tail that is being replaced.
// Within one call, the blocks of a batch (up to 32, one pread or pwrite) are
// sealed or opened by up to GOMAXPROCS goroutines that finish before the call
// returns: one sequential stream would otherwise use one core for AES-GCM.
// The pwrite of the last batch of a write is the exception: it may still run
// when the call returns (at most one per File), and every call that reads or
// completes the backing file waits for it first.
package cipherfile
