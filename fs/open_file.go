package fs

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/cipherfile"
	"github.com/sealfs/sealfs/internal/safefile"
)

// openFile is the state all handles of one regular file share: one backing
// fd and one cipherfile.File, so the header, key and size are read once and
// every handle sees the same file (issue 4 §2). It is created by the first
// open and closed when the last handle is released.
type openFile struct {
	n   *node
	key fileKey
	// rw is held shared by every I/O call and exclusively only to swap cf
	// when a read-only backing fd is upgraded for writing (a 0444 file
	// opened by a non-root daemon; see openBacking).
	rw       sync.RWMutex
	cf       *cipherfile.File
	writable bool
	refs     int // guarded by root.openMu
	// closing is set (under root.openMu) when the last reference is
	// dropped; closed is closed once the engine is closed and the entry
	// gone. Until then the backing file may lack the engine's buffered tail,
	// so lookups of the key wait (liveLocked) rather than read it.
	closing bool
	closed  chan struct{}
	// appendMu makes "read size, write there" atomic among O_APPEND writers.
	appendMu sync.Mutex
	// cacheOK: the kernel's cached pages of the file are known to match it
	// since this engine was opened (keep_cache.go).
	cacheOK atomic.Bool
}

func (r *root) cfOptions(path string) cipherfile.Options {
	return cipherfile.Options{Keys: r.keys, Path: path, Log: r.log, ReadOnly: r.opts.ReadOnly}
}

// fileKey identifies a backing inode. Open state is keyed by it in the
// root rather than hung on a node: go-fuse may briefly hold two node objects
// for one inode (a lookup builds a fresh node before go-fuse deduplicates
// it), and a hard link reached by another path must still see the size of
// the open engine, which can be ahead of the backing file.
type fileKey struct{ ino, gen uint64 }

func (n *node) key() fileKey {
	a := n.StableAttr()
	return fileKey{a.Ino, a.Gen}
}

// existingOpen returns n's shared open state with a reference held, or nil
// when no handle is open. Callers release it.
func (n *node) existingOpen() *openFile {
	return n.r.refOpen(n.key())
}

func (r *root) refOpen(k fileKey) *openFile {
	r.openMu.Lock()
	defer r.openMu.Unlock()
	of := r.liveLocked(k)
	if of != nil {
		of.refs++
	}
	return of
}

// liveLocked returns the open state of k unless its last handle is being
// released, in which case it waits for that close to finish (dropping
// openMu meanwhile) and looks again. Called and returns with openMu held.
func (r *root) liveLocked(k fileKey) *openFile {
	for {
		of := r.files[k]
		if of == nil || !of.closing {
			return of
		}
		done := of.closed
		r.openMu.Unlock()
		<-done
		r.openMu.Lock()
	}
}

// settle writes what the engine buffers, if anything, refreshes st from the
// backing fd in that case, and returns the plaintext size (which the engine
// knows even when the backing file is ahead or behind). A failed flush is
// logged by the engine and reported by the next fsync; attributes are still
// answered.
func (of *openFile) settle(st *unix.Statx_t) int64 {
	of.rw.RLock()
	defer of.rw.RUnlock()
	if of.cf.Dirty() {
		if of.cf.Flush() == nil {
			var fresh unix.Statx_t
			if fstatx(of.cf.Fd(), &fresh) == nil {
				*st = fresh
			}
		}
	}
	return of.cf.Size()
}

// acquire returns n's shared open state with a reference held, opening the
// backing file if needed. write asks for a writable backing fd; a writable
// engine opens a cipher file whose header cannot be read (a sync service's
// 0-byte placeholder, a file cut inside its header) unreadable but
// emptiable (cipherfile.Options.Emptiable), so that `cp new f` over it
// works: the kernel opens first and truncates after. wasOpen reports
// whether the state existed already.
func (n *node) acquire(write bool) (of *openFile, wasOpen bool, err error) {
	if of := n.existingOpen(); of != nil {
		if write {
			if err := of.ensureWritable(); err != nil {
				n.release(of)
				return nil, false, err
			}
		}
		return of, true, nil
	}
	f, writable, err := n.openBacking(write)
	if err != nil {
		return nil, false, err
	}
	opts := n.r.cfOptions(f.Name())
	opts.Emptiable = write && writable
	cf, err := cipherfile.Open(f, opts)
	if err != nil {
		// A header cut short (an empty file: a sync placeholder not yet
		// downloaded, a crash at creation), foreign or from a newer sealfs.
		n.r.log.Error("cipher file cannot be opened", "cipher_path", f.Name(), "err", err)
		f.Close()
		return nil, false, err
	}
	k := n.key()
	n.r.openMu.Lock()
	if of := n.r.liveLocked(k); of != nil { // another open won the race; use its state
		of.refs++
		n.r.openMu.Unlock()
		cf.Close()
		if write {
			if err := of.ensureWritable(); err != nil {
				n.release(of)
				return nil, false, err
			}
		}
		return of, true, nil
	}
	of = &openFile{n: n, key: k, cf: cf, writable: writable, refs: 1, closed: make(chan struct{})}
	n.r.files[k] = of
	n.r.openMu.Unlock()
	return of, false, nil
}

// adopt installs a freshly created cipher file as n's open state.
func (n *node) adopt(cf *cipherfile.File) (*openFile, error) {
	k := n.key()
	n.r.openMu.Lock()
	defer n.r.openMu.Unlock()
	if n.r.liveLocked(k) != nil {
		// Only possible if the backing store recycled an inode number
		// and birth time; refuse rather than mix two files.
		cf.Close()
		return nil, syscall.EIO
	}
	of := &openFile{n: n, key: k, cf: cf, writable: true, refs: 1, closed: make(chan struct{})}
	of.cacheOK.Store(true) // a new file: the kernel has cached nothing
	n.r.files[k] = of
	return of, nil
}

// release drops one reference; the last one closes the cipher file, which
// writes any buffered data. The entry stays (closing) until then, so that a
// stat racing with the close waits for complete backing attributes.
func (n *node) release(of *openFile) error {
	n.r.openMu.Lock()
	of.refs--
	last := of.refs == 0
	if last {
		of.closing = true
	}
	n.r.openMu.Unlock()
	if !last {
		return nil
	}
	of.rw.Lock()
	// The engine writes everything first, so the stamp describes the file
	// the kernel's cache holds (keep_cache.go).
	var st unix.Statx_t
	if of.cacheOK.Load() && of.cf.Flush() == nil && fstatx(of.cf.Fd(), &st) == nil {
		of.n.setStamp(&st)
	} else {
		of.n.setStamp(nil)
	}
	err := of.cf.Close()
	of.rw.Unlock()
	n.r.openMu.Lock()
	if n.r.files[of.key] == of {
		delete(n.r.files, of.key)
	}
	n.r.openMu.Unlock()
	close(of.closed)
	return err
}

func (of *openFile) withFd(fn func(fd int) error) error {
	of.rw.RLock()
	defer of.rw.RUnlock()
	return fn(of.cf.Fd())
}

func (of *openFile) flush() error {
	of.rw.RLock()
	defer of.rw.RUnlock()
	return of.cf.Flush()
}

// ensureWritable upgrades a read-only backing fd (see openBacking).
func (of *openFile) ensureWritable() error {
	of.rw.RLock()
	ok := of.writable
	of.rw.RUnlock()
	if ok {
		return nil
	}
	if of.n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	f, writable, err := of.n.openBacking(true)
	if err != nil {
		return err
	}
	if !writable {
		f.Close()
		return syscall.EACCES
	}
	opts := of.n.r.cfOptions(f.Name())
	opts.Emptiable = true
	cf, err := cipherfile.Open(f, opts)
	if err != nil {
		f.Close()
		return err
	}
	of.rw.Lock()
	defer of.rw.Unlock()
	if of.writable { // upgraded concurrently
		cf.Close()
		return nil
	}
	old := of.cf
	of.cf, of.writable = cf, true
	// The old engine was read-only: it holds no unwritten data.
	old.Close()
	return nil
}

// openBacking opens n's cipher file (named, for the engine's log lines,
// by its cipher path). It asks for O_RDWR whenever the mount is writable,
// because the engine rewrites whole blocks and every handle of an inode
// shares one fd. A file of mode 0444 cannot be opened for writing by a
// non-root daemon: for a read-only open it is opened read-only (upgraded on
// the first write open); for a write open the owner write bit is added for
// the duration of the open(2) and restored at once, as gocryptfs does. The
// caller's permission was checked before: by the kernel against the
// plaintext mode (AllowOther) or by faccessat in Open and truncate
// (access.go), so this only lifts the daemon's own limit.
//
// Only a regular file is opened, through a checked O_PATH handle
// (safefile.RegularHandle): a symlink, FIFO or device swapped in by a sync
// peer is refused (ELOOP, EIO) and logged, never opened or chmod'ed.
func (n *node) openBacking(write bool) (f *os.File, writable bool, err error) {
	d, name, err := n.at()
	if err != nil {
		return nil, false, err
	}
	defer d.put()
	return n.r.openRegular(d.fd, name, n.logPath(""), write)
}

// openRegular is openBacking for the entry name in dirfd (path names it in
// log lines).
func (r *root) openRegular(dirfd int, name, path string, write bool) (f *os.File, writable bool, err error) {
	pfd, st, err := safefile.RegularHandle(dirfd, name)
	if err != nil {
		return nil, false, r.typeError(err, path)
	}
	defer unix.Close(pfd)
	open := func(flags int) (*os.File, error) {
		fd, err := safefile.Reopen(pfd, flags)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), path), nil
	}
	if r.opts.ReadOnly {
		f, err = open(unix.O_RDONLY)
		return f, false, err
	}
	f, err = open(unix.O_RDWR)
	if err == nil || !errors.Is(err, syscall.EACCES) {
		return f, err == nil, err
	}
	if !write {
		f, err = open(unix.O_RDONLY)
		return f, false, err
	}
	mode := st.Mode & 07777
	// Read too: the engine reads the blocks a write covers partly, so even
	// a write-only (0200) file is opened read-write. chmod through the
	// handle: exactly the inode checked above.
	if err := unix.Chmod(safefile.ProcPath(pfd), mode|0o600); err != nil {
		return nil, false, err
	}
	f, err = open(unix.O_RDWR)
	if cerr := unix.Chmod(safefile.ProcPath(pfd), mode); cerr != nil && err == nil {
		r.log.Warn("restoring mode after opening a read-only file for writing", "cipher_path", path, "err", cerr)
	}
	return f, err == nil, err
}

// truncate sets the plaintext size, opening the file for the occasion when
// no handle is open (truncate(2) by path).
func (n *node) truncate(size int64) error {
	switch n.StableAttr().Mode {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return syscall.EISDIR
	default:
		return syscall.EINVAL
	}
	of, wasOpen, err := n.acquire(true)
	if err != nil {
		return err
	}
	if !wasOpen && n.stampHolds(of) {
		of.cacheOK.Store(true) // the kernel truncates its cache itself
	}
	of.rw.RLock()
	err = of.cf.Truncate(size)
	of.rw.RUnlock()
	if rerr := n.release(of); err == nil {
		err = rerr
	}
	return err
}
