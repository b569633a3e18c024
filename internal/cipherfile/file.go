package cipherfile

import (
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
}

// File is the shared per-inode state of one cipher file; all methods are safe
// for concurrent use by several FUSE handles. It owns the backing fd.
type File struct {
	mu    sync.RWMutex
	fd    *os.File
	sysfd int
	fc    *crypto.FileCipher
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
	f := &File{fd: fd, sysfd: int(fd.Fd()), log: log, ro: o.ReadOnly}
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
	h, err := crypto.NewFileHeader()
	if err != nil {
		return nil, err
	}
	if f.fc, err = o.Keys.FileCipher(h); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, crypto.CipherSize(0))
	buf = append(buf, h.Marshal()...)
	if buf, err = f.fc.SealBlock(buf, nil, 0, true); err != nil {
		return nil, err
	}
	if err := f.pwrite(buf, 0); err != nil {
		return nil, err
	}
	// A freshly created file is empty; only a reused one needs cutting, so
	// the common case costs one fstat and no ftruncate.
	st, err := fd.Stat()
	if err != nil {
		return nil, fmt.Errorf("cipherfile: stat %s: %w", o.Path, err)
	}
	if st.Size() > int64(len(buf)) {
		if err := fd.Truncate(int64(len(buf))); err != nil {
			return nil, fmt.Errorf("cipherfile: truncating %s: %w", o.Path, err)
		}
	}
	f.diskSize, f.reserved = int64(len(buf)), int64(len(buf))
	f.finalOnDisk = 0
	// The tail is empty; its buffer comes from the pool at the first write,
	// so a create allocates nothing per file (untar creates thousands).
	f.tailValid = true
	return f, nil
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
		f.size = (st.Size() - crypto.FileHeaderSize) / crypto.CipherBlockSize * crypto.BlockSize
		f.log.Warn("cipher file is truncated; reads past the intact blocks fail",
			"path", o.Path, "cipherSize", st.Size(), "intactPlainSize", f.size)
	}
	return f, nil
}

// PlainSizeOf is crypto.PlainSize for getattr on files that are not open: it
// returns 0 for a cipher size no plaintext maps to, since getattr must not
// fail (opening the file reports the damage).
func PlainSizeOf(cipherSize int64) int64 {
	n, err := crypto.PlainSize(cipherSize)
	if err != nil {
		return 0
	}
	return n
}

// Size is the plaintext size, including data not yet flushed.
func (f *File) Size() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
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
