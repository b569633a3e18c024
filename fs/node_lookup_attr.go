package fs

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/safefile"
)

// Lookup encrypts name with this directory's ID and stats the one backing
// entry it maps to: one statx per lookup, no directory scan.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.r.touch()
	e, err := n.child(name)
	if err != nil {
		return nil, toErrno(err)
	}
	defer e.done()
	var st unix.Statx_t
	err = statxAt(e.fd(), e.stored, &st)
	if err == syscall.ENOENT {
		// Perhaps a conflict copy or an entry of another directory ID,
		// whose name does not encrypt to its stored name (listing.go).
		if x, ok := n.lookupExtra(name); ok {
			e.stored = x.stored
			err = statxAt(e.fd(), e.stored, &st)
		}
	}
	if err != nil {
		return nil, toErrno(err)
	}
	ch := n.newChild(ctx, name, e.stored, &st, out)
	n.r.checkEmpty(e.fd(), e.stored, &st, &out.Attr)
	return ch, 0
}

// Getattr answers from the open backing fd when there is one (it also works
// for a file unlinked while open), else from the backing path.
func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.r.touch()
	if of := n.existingOpen(); of != nil {
		defer n.release(of)
		var st unix.Statx_t
		if err := of.withFd(func(fd int) error { return fstatx(fd, &st) }); err != nil {
			return toErrno(err)
		}
		n.fillAttr(&st, &out.Attr)
		return 0
	}
	d, name, err := n.at()
	if err != nil {
		return toErrno(err)
	}
	defer d.put()
	var st unix.Statx_t
	if err := statxAt(d.fd, name, &st); err != nil {
		return toErrno(err)
	}
	n.fillAttr(&st, &out.Attr)
	n.r.checkEmpty(d.fd, name, &st, &out.Attr)
	return 0
}

func (n *node) statBacking(st *unix.Statx_t) error {
	if of := n.existingOpen(); of != nil {
		defer n.release(of)
		return of.withFd(func(fd int) error { return fstatx(fd, st) })
	}
	d, name, err := n.at()
	if err != nil {
		return err
	}
	defer d.put()
	return statxAt(d.fd, name, st)
}

// Setattr applies chown, chmod, truncate and utimens in that order: chown
// before chmod because chown clears set-id bits, and times last because both
// truncation and flushing buffered data move the backing mtime; tar and
// rsync set times after writing and expect them to stick.
func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	if err := n.setattr(ctx, in); err != nil {
		return toErrno(err)
	}
	var st unix.Statx_t
	if err := n.statBacking(&st); err != nil {
		return toErrno(err)
	}
	n.fillAttr(&st, &out.Attr)
	n.setStamp(nil) // keep_cache.go
	// go-fuse leaves a SETATTR reply's timeout at 0, which makes the kernel
	// ask again (GETATTR) at the next stat or permission check; these are
	// fresh attributes, as cacheable as a GETATTR reply. Saves one round
	// trip per chmod/chown/utimens (rsync: two per file).
	out.SetTimeout(n.r.attrTimeout)
	return 0
}

func (n *node) setattr(ctx context.Context, in *fuse.SetAttrIn) error {
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := n.onBacking(func(fd int) error { return unix.Fchown(fd, u, g) },
			func(dfd int, name string) error {
				return unix.Fchownat(dfd, name, u, g, emptyPath(name, unix.AT_SYMLINK_NOFOLLOW))
			}); err != nil {
			return err
		}
	}
	if mode, ok := in.GetMode(); ok {
		if err := n.chmod(mode & 07777); err != nil {
			return err
		}
	}
	if size, ok := in.GetSize(); ok {
		if _, viaFd := in.GetFh(); !viaFd {
			// truncate(2) by path; ftruncate(2) needed a writable fd.
			if err := n.checkAccess(unix.W_OK); err != nil {
				return err
			}
		}
		if err := n.truncate(int64(size)); err != nil {
			return err
		}
	}
	if killRequested(in) {
		if _, err := n.killSUIDGID(ctx); err != nil {
			return err
		}
	}
	mtime, mok := in.GetMTime()
	atime, aok := in.GetATime()
	if mok || aok {
		return n.setTimes(atime, aok, mtime, mok)
	}
	return nil
}

// setTimes flushes buffered data first, so a later flush cannot overwrite
// the mtime the caller is about to set.
func (n *node) setTimes(atime time.Time, aok bool, mtime time.Time, mok bool) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if aok {
		ts[0] = unix.NsecToTimespec(atime.UnixNano())
	}
	if mok {
		ts[1] = unix.NsecToTimespec(mtime.UnixNano())
	}
	if of := n.existingOpen(); of != nil {
		err := of.flush()
		n.release(of)
		if err != nil {
			return err
		}
	}
	return n.onBacking(func(fd int) error {
		return unix.UtimesNanoAt(unix.AT_FDCWD, safefile.ProcPath(fd), ts, 0)
	}, func(dfd int, name string) error {
		return unix.UtimesNanoAt(dfd, name, ts, emptyPath(name, unix.AT_SYMLINK_NOFOLLOW))
	})
}

// chmod sets n's backing mode (never through a symlink; a symlink's mode
// cannot change: EOPNOTSUPP, as lchmod).
func (n *node) chmod(mode uint32) error {
	return n.onBacking(func(fd int) error { return unix.Fchmod(fd, mode) },
		func(dfd int, name string) error { return safefile.Chmod(dfd, name, mode) })
}

// onBacking runs byFd on the open backing fd when the file is open (cheaper,
// and the only way for a file unlinked while open), else byAt on n's place
// (backing.go).
func (n *node) onBacking(byFd func(fd int) error, byAt func(dirfd int, name string) error) error {
	if of := n.existingOpen(); of != nil {
		defer n.release(of)
		return of.withFd(byFd)
	}
	d, name, err := n.at()
	if err != nil {
		return err
	}
	defer d.put()
	if name != "" {
		if err := safefile.Component(name); err != nil {
			return err
		}
	}
	return byAt(d.fd, name)
}
