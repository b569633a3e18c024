package safefile

import (
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Extended attributes of the object open at fd. A descriptor opened for
// I/O is used directly (flistxattr, fgetxattr); an O_PATH handle, which
// those refuse with EBADF, through its /proc/self/fd link, which the
// path-based calls follow to exactly that inode. A handle of a symlink is
// refused: the link would lead to the symlink's own target, and Linux keeps
// no user.* attributes on symlinks anyway.

// xattrGuess is the first buffer tried: sealfs' names and sealed values fit,
// so most calls take one system call instead of a size probe and a read.
const xattrGuess = 1024

// Listxattr lists the names of the extended attributes of fd.
func Listxattr(fd int) ([]string, error) {
	list := func(buf []byte) (int, error) { return unix.Flistxattr(fd, buf) }
	b, err := xattrCall(fd, list, func(p string) func([]byte) (int, error) {
		return func(buf []byte) (int, error) { return unix.Listxattr(p, buf) }
	})
	if err != nil {
		return nil, &os.PathError{Op: "listxattr", Path: ProcPath(fd), Err: err}
	}
	var out []string
	for _, n := range strings.Split(string(b), "\x00") {
		if n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

// Getxattr returns the value of the extended attribute name of fd.
func Getxattr(fd int, name string) ([]byte, error) {
	get := func(buf []byte) (int, error) { return unix.Fgetxattr(fd, name, buf) }
	b, err := xattrCall(fd, get, func(p string) func([]byte) (int, error) {
		return func(buf []byte) (int, error) { return unix.Getxattr(p, name, buf) }
	})
	if err != nil {
		return nil, &os.PathError{Op: "getxattr " + name, Path: ProcPath(fd), Err: err}
	}
	return b, nil
}

// xattrCall runs call (the f* variant) with a growing buffer; on EBADF (an
// O_PATH handle) it switches to byPath on the handle's /proc link.
func xattrCall(fd int, call func([]byte) (int, error), byPath func(string) func([]byte) (int, error)) ([]byte, error) {
	buf := make([]byte, xattrGuess)
	switched := false
	for {
		n, err := call(buf)
		switch {
		case err == nil:
			return buf[:n], nil
		case err == syscall.EBADF && !switched:
			switched = true
			p, perr := handlePath(fd)
			if perr != nil {
				return nil, perr
			}
			call = byPath(p)
		case err == syscall.ERANGE:
			sz, err := call(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+1) // +1: an ERANGE again means it grew in between
		default:
			return nil, err
		}
	}
}

// handlePath is the /proc/self/fd link of the O_PATH handle fd, refusing a
// symlink's handle.
func handlePath(fd int) (string, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return "", &TypeError{Name: ProcPath(fd), Want: unix.S_IFREG, Found: unix.S_IFLNK}
	}
	return ProcPath(fd), nil
}
