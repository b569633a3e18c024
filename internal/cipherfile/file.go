package cipherfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
	"golang.org/x/sys/unix"
)

// Options configure a File.
type Options struct {
	Keys     *crypto.Keys
	Path     string       // cipher path, for log lines only
	Log      *slog.Logger // nil discards
	ReadOnly bool
	// Emptiable: Open a file whose header cannot be read in damaged mode
	// (every read and write fails) rather than failing, so that it can be
	// truncated to zero and written anew. For a writable open.
	Emptiable bool
}

// File is the shared per-inode state of one cipher file; all methods are safe
// for concurrent use by several FUSE handles. It owns the backing fd.
type File struct {
	mu    sync.RWMutex
	fd    *os.File
	sysfd int
	fc    *crypto.FileCipher
	keys  *crypto.Keys // for a new file ID when the file is emptied
	log   *slog.Logger
	path  atomic.Pointer[string]
	ro    bool

	size      int64   // plaintext size, including the tail
	diskSize  int64   // size of the backing file
	reserved  int64   // cipher bytes known to be allocated (fallocate'd or written)
	tail      []byte  // plaintext of the last block when tailValid; cap BlockSize
	tailBuf   *[]byte // tail's pooled backing array, taken at its first byte (newTail)
	tailValid bool    // tail holds the last block (memory is authoritative for it)
	tailDirty bool    // tail differs from the final block on disk
	damaged   bool    // cipher size maps to no plaintext size; see package doc
	noFalloc  bool    // the backing filesystem does not support fallocate
	closed    bool
	failed    error  // sticky: a write failed after bytes reached the disk
	wb        *batch // the batch being written behind, if any (behind.go)
	// finalOnDisk is the index of the block sealed final in the backing
	// file, or -1 while it has none (a write extended the file past it and
	// the new tail is not flushed yet). A batch that overwrites it is never
	// written behind (behind.go).
	finalOnDisk int64
	// ahead: the backing file is requested up to here (ahead.go).
	ahead atomic.Int64

	stats stats
}

// stats count backing-file writes; tests use them to prove that a sequential
// writer writes each block once and that large writes are batched.
type stats struct {
	pwrites      int64
	bytesWritten int64
}

// maxSize keeps every offset computation far from int64 overflow.
const maxSize = 1 << 60

func newFile(fd *os.File, o Options) (*File, error) {
	if o.Keys == nil {
		return nil, errors.New("cipherfile: no keys")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &File{fd: fd, sysfd: int(fd.Fd()), keys: o.Keys, log: log, ro: o.ReadOnly}
	f.SetPath(o.Path)
	return f, nil
}

// Create initialises a new, empty cipher file on f: header and one empty final
// block, written with one pwrite. f must be open for reading and writing; any
// previous contents are discarded.
func Create(fd *os.File, o Options) (*File, error) {
	f, err := newFile(fd, o)
	if err != nil {
		return nil, err
	}
	if f.ro {
		return nil, fmt.Errorf("cipherfile: creating %s: %w", o.Path, syscall.EROFS)
	}
	// A freshly created file is empty; only a reused one needs cutting, so
	// the common case costs one fstat and no ftruncate.
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("cipherfile: stat %s: %w", o.Path, err)
	}
	if err := f.writeEmpty(st.Size() > crypto.CipherSize(0)); err != nil {
		return nil, err
	}
	return f, nil
}

// writeEmpty makes the backing file a new, empty cipher file: a header with
// a fresh random file ID and one empty final block, and resets the state to
// match. cut: the backing file holds more, to be cut off afterwards. A new
// ID whenever a file's contents are dropped means no block of an earlier
// version (the sync service keeps them) can ever authenticate in the new
// one (docs/threat-model.md).
func (f *File) writeEmpty(cut bool) error {
	h, err := crypto.NewFileHeader()
	if err != nil {
		return err
	}
	fc, err := f.keys.FileCipher(h)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, crypto.CipherSize(0))
	buf = append(buf, h.Marshal()...)
	if buf, err = fc.SealBlock(buf, nil, 0, true); err != nil {
		return err
	}
	// Cut first: a crash between the two calls leaves an empty backing
	// file (reported as damaged), never the new header in front of the old
	// version's blocks.
	if cut {
		if err := f.fd.Truncate(0); err != nil {
			return fmt.Errorf("cipherfile: truncating %s: %w", f.Path(), err)
		}
	}
	if err := f.pwrite(buf, 0); err != nil {
		return err
	}
	f.fc = fc
	f.size, f.diskSize, f.reserved = 0, int64(len(buf)), int64(len(buf))
	f.finalOnDisk, f.damaged = 0, false
	// The tail is empty; its buffer comes from the pool at the first write,
	// so a create allocates nothing per file (untar creates thousands).
	if f.tail != nil {
		f.tail = f.tail[:0]
	}
	f.tailValid, f.tailDirty = true, false
	return nil
}

// Open reads and checks the header of an existing cipher file. The plaintext
// size comes from fstat via crypto.PlainSize; a size that maps to none opens
// the file in damaged mode (see the package doc) instead of failing, so the
// intact blocks stay readable.
func Open(fd *os.File, o Options) (*File, error) {
	f, err := newFile(fd, o)
	if err != nil {
		return nil, err
	}
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("cipherfile: stat %s: %w", o.Path, err)
	}
	hb := make([]byte, crypto.FileHeaderSize)
	n, err := fd.ReadAt(hb, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("cipherfile: reading header of %s: %w", o.Path, err)
	}
	h, err := crypto.ParseFileHeader(hb[:n])
	if err != nil && o.Emptiable && !o.ReadOnly {
		// Nothing can be read, but truncating to zero (which starts the
		// file afresh) must work: `cp new f` over a sync service's 0-byte
		// placeholder, or over a file cut inside its header.
		f.log.Warn("cipher file header unreadable; only truncating it to zero will work", "path", o.Path, "err", err)
		f.damaged, f.finalOnDisk, f.size = true, -1, 0
		f.diskSize, f.reserved = st.Size(), st.Size()
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cipherfile: %s: %w", o.Path, err)
	}
	if f.fc, err = o.Keys.FileCipher(h); err != nil {
		return nil, err
	}
	f.diskSize, f.reserved = st.Size(), st.Size()
	f.size, err = crypto.PlainSize(st.Size())
	f.finalOnDisk = lastBlock(f.size)
	if err != nil {
		// Every block before the one the cut fell into is complete; the
		// cut block itself has no plaintext bytes left (PlainSize only
		// fails when fewer than BlockOverhead bytes remain of it).
		f.damaged, f.finalOnDisk = true, -1
		f.size = intactPlain(st.Size())
		f.log.Warn("cipher file is truncated; reads past the intact blocks fail",
			"path", o.Path, "cipherSize", st.Size(), "intactPlainSize", f.size)
	} else if f.size == 0 {
		// The size of an empty file is also that of any file cut 28
		// bytes into its first block: only the block's tag tells them
		// apart, and a cut file must not read as an empty one.
		bp := getBlock()
		_, err := f.loadBlock(bp, 0)
		putBlock(bp)
		if err != nil {
			f.damaged, f.finalOnDisk = true, -1
		}
	}
	return f, nil
}

// PlainSizeOf is crypto.PlainSize for getattr on files that are not open.
// getattr must not fail, and must not present a damaged file as a shorter
// complete one either: for a cipher size no plaintext maps to it answers
// DamagedSize, so that a reader reaches the damaged block and gets EIO
// there (opening the file, or reading that block, reports the damage).
func PlainSizeOf(cipherSize int64) int64 {
	n, err := crypto.PlainSize(cipherSize)
	if err != nil {
		return DamagedSize(cipherSize)
	}
	return n
}

// DamagedSize is the size reported for a cipher file of cipherSize bytes
// that maps to no plaintext size: the plaintext of its complete blocks plus
// one byte, which lies in the damaged block. A file cut inside its header
// (or empty: a sync placeholder, a crash at creation) reports 1 byte; its
// open fails.
func DamagedSize(cipherSize int64) int64 {
	return intactPlain(cipherSize) + 1
}

// intactPlain is the plaintext held by the complete blocks of a cipher file
// of cipherSize bytes.
func intactPlain(cipherSize int64) int64 {
	body := max(cipherSize-crypto.FileHeaderSize, 0)
	return body / crypto.CipherBlockSize * crypto.BlockSize
}

// CheckEmpty authenticates the cipher file open at fd whose size is that of
// an empty file (crypto.CipherSize(0)). Any file cut 28 bytes into its first
// block has that size too; only the empty block's tag tells them apart, so
// getattr asks here before it reports 0 bytes (else DamagedSize).
func CheckEmpty(keys *crypto.Keys, fd int) error {
	b := make([]byte, crypto.CipherSize(0)+1)
	n, err := unix.Pread(fd, b, 0)
	if err != nil {
		return err
	}
	if int64(n) != crypto.CipherSize(0) {
		return fmt.Errorf("cipherfile: %d bytes where an empty file has %d: %w", n, crypto.CipherSize(0), crypto.ErrTruncated)
	}
	r, err := keys.NewDecryptReader(bytes.NewReader(b[:n]))
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	return err
}

// Size is the plaintext size, including data not yet flushed. A damaged file
// reports DamagedSize: reads of its intact prefix succeed, a read of the
// byte after it fails.
func (f *File) Size() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.damaged {
		return f.size + 1
	}
	return f.size
}

// Dirty reports whether Flush has anything to do: a tail not yet on disk, or
// a batch written behind (whose completion moves the backing file's times).
func (f *File) Dirty() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.tailDirty || f.wb != nil
}

// SetPath records the cipher path after a rename, for log lines.
func (f *File) SetPath(p string) { f.path.Store(&p) }

// Path is the cipher path last set.
func (f *File) Path() string { return *f.path.Load() }

// Fd is the backing file descriptor, for fchmod/fchown/futimens.
func (f *File) Fd() int { return f.sysfd }

// Flush makes the cipher file on disk complete and consistent: it writes the
// tail as the final block and cuts what a shrink left behind.
func (f *File) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.closedErr()
	}
	return f.flushLocked()
}

// Sync is Flush followed by fdatasync (dataOnly) or fsync. The sync runs
// without the lock: it covers every write issued before it, and readers and
// writers need not wait for the disk. It goes through the os.File so that a
// concurrent Close cannot make it sync a reused descriptor number.
func (f *File) Sync(dataOnly bool) error {
	if err := f.Flush(); err != nil {
		return err
	}
	var err error
	if dataOnly {
		var rc syscall.RawConn
		if rc, err = f.fd.SyscallConn(); err == nil {
			cerr := rc.Control(func(fd uintptr) { err = unix.Fdatasync(int(fd)) })
			err = errors.Join(cerr, err)
		}
	} else {
		err = f.fd.Sync()
	}
	if err != nil {
		return fmt.Errorf("cipherfile: syncing %s: %w", f.Path(), err)
	}
	return nil
}

// Close flushes and closes the backing fd. Later calls fail with os.ErrClosed.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.closedErr()
	}
	ferr := f.flushLocked()
	f.closed = true
	f.tail, f.tailValid = nil, false
	if f.tailBuf != nil {
		putBlock(f.tailBuf)
		f.tailBuf = nil
	}
	if err := f.fd.Close(); err != nil {
		return errors.Join(ferr, fmt.Errorf("cipherfile: closing %s: %w", f.Path(), err))
	}
	return ferr
}

// flushLocked writes a dirty tail as the final block, then cuts the backing
// file to the size the plaintext maps to. The final block is written first so
// that a crash in between leaves the new contents rather than a shorter file.
func (f *File) flushLocked() error {
	if err := f.drain(); err != nil {
		return err
	}
	if f.failed != nil {
		return f.failed
	}
	if f.tailDirty {
		bp := getBlock()
		defer putBlock(bp)
		buf := (*bp)[:0]
		last := lastBlock(f.size)
		buf, err := f.fc.SealBlock(buf, f.tail, uint64(last), true)
		if err != nil {
			return err
		}
		if err := f.pwrite(buf, crypto.BlockOffset(last)); err != nil {
			return f.fail(err)
		}
		f.tailDirty, f.finalOnDisk = false, last
	}
	// A damaged file is left as found (only Truncate repairs it): cutting it
	// here would turn detectable damage into a plausible shorter file.
	if want := crypto.CipherSize(f.size); f.diskSize > want && !f.damaged {
		if err := f.fd.Truncate(want); err != nil {
			return f.fail(fmt.Errorf("cipherfile: truncating %s: %w", f.Path(), err))
		}
		f.diskSize, f.reserved = want, min(f.reserved, want)
	}
	return nil
}

// checkWritable is the common precondition of every mutating call; the caller
// holds f.mu exclusively.
func (f *File) checkWritable() error {
	switch {
	case f.closed:
		return f.closedErr()
	case f.ro:
		return fmt.Errorf("cipherfile: %s is read-only: %w", f.Path(), syscall.EROFS)
	case f.failed != nil:
		return f.failed
	}
	return nil
}

func (f *File) closedErr() error {
	return fmt.Errorf("cipherfile: %s: %w", f.Path(), os.ErrClosed)
}

func (f *File) damagedErr() error {
	return fmt.Errorf("cipherfile: %s: %w: the last block is cut short; truncate to at most %d bytes to repair",
		f.Path(), crypto.ErrTruncated, f.size)
}

// fail records that disk and memory may now disagree.
func (f *File) fail(err error) error {
	f.failed = fmt.Errorf("cipherfile: %s: an earlier write failed, the file is in an unknown state: %w", f.Path(), err)
	f.log.Error("write to cipher file failed", "path", f.Path(), "err", err)
	return err
}
