package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/internal/safefile"
)

// Who checks permissions. With AllowOther the kernel does, against the
// plaintext modes and owners (default_permissions): other users must get
// exactly what the modes give them, and the daemon may be root. Without it
// FUSE lets no one but the mounting user in (root included), and the daemon
// runs as that user on backing files and directories that carry the same
// modes and owner, so the backing filesystem makes the kernel's decision
// when the daemon acts by path. Leaving the checks there saves a round trip
// per create, unlink and rename: default_permissions needs a directory's
// attributes fresh for every check in it, and every change to the directory
// invalidates them (a GETATTR per untarred and per removed file; see
// docs/performance.md). gocryptfs draws the same line.
//
// What the backing filesystem cannot see is a request the daemon serves
// with an fd it already holds or opens on its own terms: an open of a file
// whose engine is open (its fd may be writable from before a chmod 0444),
// truncate(2) by path (openBacking opens even a 0444 file writable, for the
// root-with-AllowOther case), and listing a directory (opened only at the
// first READDIR). Those, and ACCESS (access(2), chdir), ask faccessat(2) on
// the backing entry first. A caller of the mounting user's uid with fewer
// capabilities or other supplementary groups than the daemon is judged by
// the daemon's; docs/threat-model.md says so.

var _ gofs.NodeAccesser = (*node)(nil)

// Access serves access(2) and the kernel's chdir check. The kernel sends it
// only without default_permissions.
func (n *node) Access(ctx context.Context, mask uint32) syscall.Errno {
	n.r.touch()
	return toErrno(n.checkAccess(mask))
}

// checkAccess asks the backing filesystem whether the daemon, which is the
// caller's uid, may access n with mask (R_OK, W_OK, X_OK). It passes at
// once where the kernel has checked already (AllowOther).
func (n *node) checkAccess(mask uint32) error {
	mask &= unix.R_OK | unix.W_OK | unix.X_OK
	if n.r.opts.AllowOther || mask == 0 {
		return nil
	}
	if mask&unix.W_OK != 0 && n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	d, name, err := n.at()
	if err != nil {
		// Unlinked but still open (reopened through /proc/PID/fd): the
		// engine's fd is the only way to the backing inode.
		of := n.existingOpen()
		if of == nil {
			return err
		}
		defer n.release(of)
		return of.withFd(func(fd int) error {
			return unix.Faccessat(unix.AT_FDCWD, safefile.ProcPath(fd), mask, 0)
		})
	}
	defer d.put()
	if name != "" {
		if err := safefile.Component(name); err != nil {
			return err
		}
	}
	return unix.Faccessat(d.fd, name, mask, emptyPath(name, unix.AT_SYMLINK_NOFOLLOW))
}

// fmodeExec is __FMODE_EXEC: execve's open carries it in the FUSE OPEN flags.
const fmodeExec = 0x20

// openMask is the access an open(2) with flags needs, as the kernel's
// may_open computes it (O_TRUNC needs write permission even with O_RDONLY).
// An execve needs X_OK on top: without default_permissions the kernel
// only checks that some x bit is set, not the caller's.
func openMask(flags uint32) uint32 {
	var m uint32
	switch flags & accMode {
	case syscall.O_RDONLY:
		m = unix.R_OK
	case syscall.O_WRONLY:
		m = unix.W_OK
	default:
		m = unix.R_OK | unix.W_OK
	}
	if flags&syscall.O_TRUNC != 0 {
		m |= unix.W_OK
	}
	if flags&fmodeExec != 0 {
		m |= unix.X_OK
	}
	return m
}
