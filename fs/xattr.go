package fs

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
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

// xattrPlace returns the stored name of attribute attr and the cipher path
// it lives on. unencryptable is the answer for a user.* name that cannot be
// encrypted (too long): no such attribute for a read, invalid for a write.
func (n *node) xattrPlace(attr string, unencryptable syscall.Errno) (stored, path string, errno syscall.Errno) {
	if !strings.HasPrefix(attr, crypto.XattrPrefix) {
		return "", "", syscall.EOPNOTSUPP
	}
	stored, err := n.r.keys.EncryptXattrName(attr)
	if err != nil {
		return "", "", unencryptable
	}
	path, err = n.cipherPath()
	if err != nil {
		return "", "", toErrno(err)
	}
	return stored, path, 0
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.r.touch()
	stored, p, errno := n.xattrPlace(attr, syscall.ENODATA)
	if errno != 0 {
		return 0, errno
	}
	raw, err := lgetxattr(p, stored)
	if err != nil {
		return 0, toErrno(err)
	}
	val, err := n.r.keys.DecryptXattrValue(stored, raw)
	if err != nil {
		n.r.log.Error("xattr value failed authentication", "cipher_path", p, "err", err)
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
	stored, p, errno := n.xattrPlace(attr, syscall.EINVAL)
	if errno != 0 {
		return errno
	}
	return toErrno(unix.Lsetxattr(p, stored, n.r.keys.EncryptXattrValue(stored, data), int(flags)))
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	n.r.touch()
	if n.r.opts.ReadOnly {
		return syscall.EROFS
	}
	stored, p, errno := n.xattrPlace(attr, syscall.ENODATA)
	if errno != 0 {
		return errno
	}
	return toErrno(unix.Lremovexattr(p, stored))
}

// Listxattr lists the decryptable user.sealfs.* attributes; foreign or
// tampered ones are skipped (tampered ones logged).
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.r.touch()
	p, err := n.cipherPath()
	if err != nil {
		return 0, toErrno(err)
	}
	raw, err := llistxattr(p)
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
			n.r.log.Warn("xattr name failed authentication; not listed", "cipher_path", p, "err", err)
			continue
		}
		out = append(append(out, name...), 0)
	}
	if len(dest) < len(out) {
		return uint32(len(out)), syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}

// lgetxattr and llistxattr size their buffer with a probe call and retry
// if the attribute grew in between.
func lgetxattr(path, name string) ([]byte, error) {
	return sized(func(b []byte) (int, error) { return unix.Lgetxattr(path, name, b) })
}

func llistxattr(path string) ([]byte, error) {
	return sized(func(b []byte) (int, error) { return unix.Llistxattr(path, b) })
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
