package fs

import (
	"context"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/cipherfile"
	"github.com/sealfs/sealfs/internal/safefile"
)

const accMode = syscall.O_ACCMODE

func wantsWrite(flags uint32) bool { return flags&accMode != syscall.O_RDONLY }

// Open attaches a handle to the inode's shared cipher file, opening it on
// the first open.
func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.r.touch()
	write := wantsWrite(flags)
	if write && n.r.opts.ReadOnly {
		return nil, 0, syscall.EROFS
	}
	if err := n.checkAccess(openMask(flags)); err != nil {
		return nil, 0, toErrno(err)
	}
	of, wasOpen, err := n.acquire(write)
	if err != nil {
		return nil, 0, toErrno(err)
	}
	if !wasOpen {
		n.noteColdOpen()
	}
	if write && flags&syscall.O_TRUNC != 0 {
		// The kernel usually truncates with SETATTR first; this covers
		// kernels that pass O_TRUNC through. Size 0 again is a no-op.
		of.rw.RLock()
		err := of.cf.Truncate(0)
		of.rw.RUnlock()
		if err != nil {
			n.release(of)
			return nil, 0, toErrno(err)
		}
	}
	return newHandle(n, of, flags), openFlags | n.keepCache(of, wasOpen), 0
}

// openFlags are the FOPEN_* flags of every regular-file handle.
// FOPEN_NOFLUSH: close(2) does not wait for a FLUSH round trip (one per
// close: a quarter of tar's and rsync's per-file round trips before). The
// engine's buffered tail is written when the file's attributes are next
// reported (fillAttr), at utimens, fsync, and at RELEASE, which the kernel
// sends right after the last close. What this gives up: an I/O error while
// writing that tail is no longer returned by close(2); it is logged, as a
// page-cache filesystem reports writeback errors only to fsync. ENOSPC cannot
// occur there, since writes reserve their space first (cipherfile.reserve).
const openFlags = fuse.FOPEN_NOFLUSH

// Create makes a new cipher file (header and empty final block written by
// the engine) and returns it open. A long name gets its side file first, so
// a crash never leaves an entry whose name cannot be recovered.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if err := n.writableDir(); err != nil { // listing.go
		return nil, nil, 0, toErrno(err)
	}
	e, err := n.child(name)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	defer e.done()
	sideMade, err := n.r.writeSideFile(e)
	if err != nil {
		return nil, nil, 0, toErrno(err)
	}
	// O_EXCL: a new inode or nothing; it never follows or opens what is
	// there (a symlink, a FIFO a sync peer just put there).
	fd, err := unix.Openat(e.fd(), e.stored, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode&0o777)
	if err == unix.EEXIST && flags&syscall.O_EXCL == 0 {
		// The kernel's negative entry was stale (e.g. a sync just brought
		// the file): open the existing file as open(2) without O_EXCL does.
		return n.openExisting(ctx, name, e, flags, out)
	}
	if err != nil {
		n.r.removeSideFile(e, sideMade)
		return nil, nil, 0, toErrno(err)
	}
	f := os.NewFile(uintptr(fd), e.path())
	ch, of, err := n.initCreated(ctx, name, e, f, mode, out)
	if err != nil {
		f.Close()
		unix.Unlinkat(e.fd(), e.stored, 0)
		n.r.removeSideFile(e, sideMade)
		return nil, nil, 0, toErrno(err)
	}
	return ch, newHandle(asNode(ch), of, flags), openFlags, 0
}

func (n *node) initCreated(ctx context.Context, name string, e entryName, f *os.File, mode uint32, out *fuse.EntryOut) (*gofs.Inode, *openFile, error) {
	fd := int(f.Fd())
	if err := n.r.fixNewOwnerMode(ctx, obj{fd: fd}, mode); err != nil {
		return nil, nil, err
	}
	cf, err := cipherfile.Create(f, n.r.cfOptions(e.path()))
	if err != nil {
		return nil, nil, err
	}
	var st unix.Statx_t
	if err := fstatx(fd, &st); err != nil {
		cf.Close()
		return nil, nil, err
	}
	ch := n.newChild(ctx, name, e.stored, &st, out)
	of, err := asNode(ch).adopt(cf)
	if err != nil {
		return nil, nil, err
	}
	return ch, of, nil
}

func (n *node) openExisting(ctx context.Context, name string, e entryName, flags uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	var st unix.Statx_t
	if err := statxAt(e.fd(), e.stored, &st); err != nil {
		return nil, nil, 0, toErrno(err)
	}
	ch := n.newChild(ctx, name, e.stored, &st, out)
	fh, fl, errno := asNode(ch).Open(ctx, flags)
	if errno == 0 {
		asNode(ch).fillAttr(&st, &out.Attr)
	}
	return ch, fh, fl, errno
}

// obj names a backing object for the owner and mode fix-ups: an open fd,
// or (when name is set) the entry name in dirfd, never followed if a
// symlink.
type obj struct {
	fd    int
	dirfd int
	name  string
}

// fixNewOwnerMode gives a new backing object the mode and owner the caller
// asked for. The kernel already applied the caller's umask to mode; the
// daemon's own umask must not strip more, so chmod only when it did. A root
// daemon creates as root, so it chowns to the caller (as go-fuse's loopback
// does); a non-root daemon owns everything it creates, like any FUSE mount.
func (r *root) fixNewOwnerMode(ctx context.Context, o obj, mode uint32) error {
	// chown first: it clears set-id bits the chmod may set.
	if err := r.chownToCaller(ctx, o); err != nil {
		return err
	}
	perm := mode & 07777
	if perm&r.umask != 0 || perm&07000 != 0 {
		if o.name == "" {
			return unix.Fchmod(o.fd, perm)
		}
		return safefile.Chmod(o.dirfd, o.name, perm)
	}
	return nil
}

func (r *root) chownToCaller(ctx context.Context, o obj) error {
	if !r.asRoot {
		return nil
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok || (caller.Uid == 0 && caller.Gid == 0) {
		return nil
	}
	if o.name == "" { // an open fd or an O_PATH handle
		return unix.Fchownat(o.fd, "", int(caller.Uid), int(caller.Gid), unix.AT_EMPTY_PATH)
	}
	return unix.Fchownat(o.dirfd, o.name, int(caller.Uid), int(caller.Gid), unix.AT_SYMLINK_NOFOLLOW)
}
