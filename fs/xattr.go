package fs

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// Extended attributes: only user.* is offered, stored on the cipher file
// under an encrypted name with an encrypted value (docs/format.md §7).
// Other namespaces (security.*, system.posix_acl_*, trusted.*) answer as a
// filesystem without handlers for them does: EOPNOTSUPP for get, set and
// remove. That answer matters for speed: ls -l asks for security.selinux
// and system.posix_acl_access (and _default on directories) of every entry,
// each a FUSE round trip the kernel cannot cache (it caches only "no xattrs
// at all", which would also hide user.*). On ENODATA ls asks again for the
// next entry; on EOPNOTSUPP it remembers that the device lacks them and
// stops asking (coreutils ls: getfilecon_cache, file_has_acl_cache), so
// ls -lR costs three round trips instead of two to three per entry.

// xattrName returns the stored name of attribute attr. unencryptable is
// the answer for a user.* name that cannot be encrypted (too long): no such
// attribute for a read, invalid for a write.
func (n *node) xattrName(attr string, unencryptable syscall.Errno) (stored string, errno syscall.Errno) {
	if !strings.HasPrefix(attr, crypto.XattrPrefix) {
		return "", syscall.EOPNOTSUPP
	}
	stored, err := n.r.keys.EncryptXattrName(attr)
	if err != nil {
		return "", unencryptable
	}
	return stored, 0
}

// errSymlinkXattr: n's backing object is a symlink, which carries no user.*
// attributes on Linux; each operation answers as the kernel would.
var errSymlinkXattr = errors.New("symlink")

// onXattrs runs fn with a path that reaches exactly n's backing inode and is
// followed by the *xattr calls: the /proc link of the open engine's fd, or
// of an O_PATH handle of n's entry (there are no *xattrat calls before Linux
// 6.13, and a path of several components is never passed; backing.go). A
// symlink is not followed: errSymlinkXattr.
func (n *node) onXattrs(fn func(p string) error) error {
	return n.onBacking(func(fd int) error { return fn(safefile.ProcPath(fd)) },
		func(dfd int, name string) error {
			if name == "" { // the root: a directory
				return fn(safefile.ProcPath(dfd))
			}
			pfd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(pfd)
			var st unix.Stat_t
			if err := unix.Fstat(pfd, &st); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				return errSymlinkXattr
			}
			return fn(safefile.ProcPath(pfd))
		})
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.r.touch()
	stored, errno := n.xattrName(attr, syscall.ENODATA)
	if errno != 0 {
		return 0, errno
	}
	var raw []byte
	err := n.onXattrs(func(p string) (err error) {
		raw, err = getxattr(p, stored)
		return err
	})
	if errors.Is(err, errSymlinkXattr) {
		return 0, syscall.ENODATA
	}
	if err != nil {
		return 0, toErrno(err)
	}
	val, err := n.r.keys.DecryptXattrValue(stored, raw)
	if err != nil {
		n.r.log.Error("xattr value failed authentication", "cipher_path", n.logPath(""), "err", err)
		return 0, syscall.EIO
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	stored, errno := n.xattrName(attr, syscall.EINVAL)
	if errno != 0 {
		return errno
	}
	val := n.r.keys.EncryptXattrValue(stored, data)
	err := n.onXattrs(func(p string) error { return unix.Setxattr(p, stored, val, int(flags)) })
	if errors.Is(err, errSymlinkXattr) {
		return syscall.EPERM // user.* on a symlink, as the kernel says
	}
	return toErrno(err)
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	stored, errno := n.xattrName(attr, syscall.ENODATA)
	if errno != 0 {
		return errno
	}
	err := n.onXattrs(func(p string) error { return unix.Removexattr(p, stored) })
	if errors.Is(err, errSymlinkXattr) {
		return syscall.ENODATA
	}
	return toErrno(err)
}

// Listxattr lists the decryptable user.sealfs.* attributes; foreign or
// tampered ones are skipped (tampered ones logged).
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.r.touch()
	var raw []byte
	err := n.onXattrs(func(p string) (err error) {
		raw, err = listxattr(p)
		return err
	})
	if errors.Is(err, errSymlinkXattr) {
		return 0, 0
	}
	if err != nil {
		return 0, toErrno(err)
	}
	var out []byte
	for _, s := range strings.Split(string(raw), "\x00") {
		if !strings.HasPrefix(s, crypto.StoredXattrPrefix) {
			continue
		}
		name, err := n.r.keys.DecryptXattrName(s)
		if err != nil {
			n.r.log.Warn("xattr name failed authentication; not listed", "cipher_path", n.logPath(""), "err", err)
			continue
		}
		out = append(append(out, name...), 0)
	}
	if len(dest) < len(out) {
		return uint32(len(out)), syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}

// getxattr and listxattr size their buffer with a probe call and retry if
// the attribute grew in between. They follow path: it is a /proc/self/fd
// link (onXattrs).
func getxattr(path, name string) ([]byte, error) {
	return sized(func(b []byte) (int, error) { return unix.Getxattr(path, name, b) })
}

func listxattr(path string) ([]byte, error) {
	return sized(func(b []byte) (int, error) { return unix.Listxattr(path, b) })
}

func sized(call func([]byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for range 4 {
		sz, err := call(buf)
		if err == nil {
			return buf[:sz], nil
		}
		if !errors.Is(err, syscall.ERANGE) {
			return nil, err
		}
		if sz, err = call(nil); err != nil {
			return nil, err
		}
		buf = make([]byte, sz+64)
	}
	return nil, syscall.ERANGE
}
