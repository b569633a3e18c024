package safefile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Everything sealfs does in the cipher folder goes through a directory file
// descriptor and one path component, never through a path of several
// components: a symlink planted in place of any directory of a path would
// send a path-based call (chmod, mkdir, open even with O_NOFOLLOW, which
// guards the last component only) outside the vault, and the synced folder
// can change between any two calls. The functions here take (dirfd, name)
// and follow no symlink at any step; whatever is found where a directory or
// a regular file belongs is refused with a *TypeError before it is acted on.

// ErrNotDir is wrapped by a TypeError for something that is not a directory
// where one belongs.
var ErrNotDir = errors.New("not a directory")

// ErrNotSymlink is wrapped by a TypeError for something that is not a
// symlink where one was read as such (it was swapped since it was listed).
var ErrNotSymlink = errors.New("not a symlink")

// TypeError reports an entry of the wrong type: a symlink, FIFO, socket or
// device where a directory or a regular file belongs (a sync peer can put
// any of them there).
type TypeError struct {
	Name  string
	Want  uint32 // S_IFDIR, S_IFREG or S_IFLNK
	Found uint32 // the S_IFMT bits of what is there
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("%s: found a %s where a %s belongs", e.Name, TypeName(e.Found), TypeName(e.Want))
}

// Unwrap makes errors.Is(err, ErrNotDir) / (err, ErrNotRegular) /
// (err, ErrNotSymlink) work.
func (e *TypeError) Unwrap() error {
	switch e.Want {
	case unix.S_IFDIR:
		return ErrNotDir
	case unix.S_IFLNK:
		return ErrNotSymlink
	}
	return ErrNotRegular
}

// Errno is what a file system call answers: ELOOP for a symlink (as
// O_NOFOLLOW does), EIO for any other misplaced type.
func (e *TypeError) Errno() syscall.Errno {
	if e.Found == unix.S_IFLNK {
		return syscall.ELOOP
	}
	return syscall.EIO
}

// TypeName names the file type in S_IFMT bits for messages.
func TypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	}
	return "file of unknown type"
}

// ErrBadComponent is returned for a name that is not exactly one path
// component. sealfs only ever passes names it made (base64url, sealfs.*) or
// read from a directory listing, so this is a programming error caught
// before a system call could walk more than one step.
var ErrBadComponent = errors.New("not a single path component")

// Component checks that name is one entry's name: not empty, not "." or
// "..", no '/' and no NUL. (A directory's own descriptor is named "" with
// AT_EMPTY_PATH where a call takes it.)
func Component(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%q: %w", name, ErrBadComponent)
	}
	return nil
}

// OpenDir opens the directory name in dirfd as an O_PATH handle: usable as
// the dirfd of *at calls and for fstat/fstatfs, not for reading. A symlink
// is never followed.
func OpenDir(dirfd int, name string) (int, error) {
	if err := Component(name); err != nil {
		return -1, err
	}
	fd, err := openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err == syscall.ENOTDIR {
		return -1, typeErrorAt(dirfd, name, unix.S_IFDIR, err)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// OpenDirRead opens the directory name in dirfd for reading (getdents,
// fsync, flock); "" reopens dirfd itself (an O_PATH handle becomes
// readable; unlike ".", this needs no search permission on it).
func OpenDirRead(dirfd int, name string) (int, error) {
	if name == "" {
		fd, err := Reopen(dirfd, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: ProcPath(dirfd), Err: err}
		}
		return fd, nil
	}
	if err := Component(name); err != nil {
		return -1, err
	}
	fd, err := openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err == syscall.ENOTDIR || err == syscall.ELOOP {
		return -1, typeErrorAt(dirfd, name, unix.S_IFDIR, err)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// OpenFile opens the regular file name in dirfd with flags (O_RDONLY,
// O_RDWR, …; not O_CREAT or O_TRUNC). The entry is first opened as an O_PATH
// handle and checked: only a regular file is then opened for real, through
// its /proc/self/fd link, which reaches exactly the inode checked. So
// neither a symlink nor a FIFO (open would block), a socket or a device
// (open can have side effects) is ever opened, whatever a sync peer swaps
// in between.
func OpenFile(dirfd int, name string, flags int) (int, error) {
	pfd, _, err := RegularHandle(dirfd, name)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	fd, err := Reopen(pfd, flags)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

// RegularHandle returns an O_PATH handle of the regular file name in dirfd
// and its attributes; anything else there is refused with a TypeError. The
// handle pins the inode for Reopen and ProcPath-based calls (chmod).
func RegularHandle(dirfd int, name string) (pfd int, st unix.Stat_t, err error) {
	if err := Component(name); err != nil {
		return -1, st, err
	}
	pfd, err = openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return -1, st, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if err := unix.Fstat(pfd, &st); err != nil {
		unix.Close(pfd)
		return -1, st, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(pfd)
		return -1, st, &TypeError{Name: name, Want: unix.S_IFREG, Found: st.Mode & unix.S_IFMT}
	}
	return pfd, st, nil
}

// Reopen opens the object behind an O_PATH handle with flags (not O_CREAT
// or O_TRUNC), through its /proc/self/fd link (the kernel's own way to
// upgrade a handle; it follows no name, so nothing can be swapped in).
// Permission checks are those of an open by name.
func Reopen(pfd, flags int) (int, error) {
	if flags&(unix.O_CREAT|unix.O_TRUNC) != 0 {
		return -1, syscall.EINVAL
	}
	for {
		fd, err := unix.Open(ProcPath(pfd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// ProcPath is the /proc/self/fd link of fd. Path-based calls on it (chmod,
// getxattr, utimensat) act on the inode behind fd; calls that do not follow
// symlinks (lchown, lgetxattr) would act on the link itself instead.
func ProcPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// ReadFileAt is ReadFile for the entry name in dirfd.
func ReadFileAt(dirfd int, name string, max int64) ([]byte, error) {
	// Through a checked O_PATH handle like OpenFile: a FIFO (open would
	// block), a socket or a device planted as a metadata file is refused
	// before it is opened.
	fd, err := OpenFile(dirfd, name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return readAll(fd, name, max)
}

// Lstat is lstat of the entry name in dirfd (fstatat with
// AT_SYMLINK_NOFOLLOW).
func Lstat(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	if err := Component(name); err != nil {
		return st, err
	}
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	return st, nil
}

// ReadlinkAt reads the target of the symlink name in dirfd. Anything else
// there (a sync peer swapped it since it was listed) is a TypeError.
func ReadlinkAt(dirfd int, name string) (string, error) {
	if err := Component(name); err != nil {
		return "", err
	}
	// PATH_MAX holds any target Linux lets a symlink have; a longer
	// buffer is only tried if a file system ever fills this one.
	for size := unix.PathMax; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err == syscall.EINVAL {
			return "", typeErrorAt(dirfd, name, unix.S_IFLNK, err)
		}
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Chmod sets the mode of the entry name in dirfd without following a
// symlink (symlinks have no mode of their own on Linux: EOPNOTSUPP, as
// lchmod); "" is dirfd itself. fchmodat2 (Linux ≥ 6.6) does it in one call;
// older kernels get an O_PATH handle, a type check and chmod through /proc.
func Chmod(dirfd int, name string, mode uint32) error {
	if name == "" {
		err := unix.Fchmodat(dirfd, "", mode, unix.AT_EMPTY_PATH)
		if err == unix.EOPNOTSUPP && noFchmodat2() {
			err = unix.Chmod(ProcPath(dirfd), mode)
		}
		return err
	}
	if err := Component(name); err != nil {
		return err
	}
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP || !noFchmodat2() {
		return err
	}
	pfd, err := openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.EOPNOTSUPP
	}
	return unix.Chmod(ProcPath(pfd), mode)
}

// noFchmodat2 reports whether the kernel lacks fchmodat2 (then x/sys turns
// ENOSYS into EOPNOTSUPP, which a symlink also gives). The probe passes a
// NULL path: EFAULT where the call exists.
var noFchmodat2 = sync.OnceValue(func() bool {
	fdcwd := unix.AT_FDCWD
	_, _, e := unix.Syscall6(unix.SYS_FCHMODAT2, uintptr(fdcwd), 0, 0, 0, 0, 0)
	return e == unix.ENOSYS
})

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// typeErrorAt explains why opening name as want failed with err: what is
// there instead. If the entry vanished meanwhile, err stands.
func typeErrorAt(dirfd int, name string, want uint32, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != want {
		return &TypeError{Name: name, Want: want, Found: st.Mode & unix.S_IFMT}
	}
	return &os.PathError{Op: "open", Path: name, Err: err}
}
