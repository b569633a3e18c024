// Package safefile reads small metadata files from the cipher folder, which
// anyone with write access to the synced folder controls: a FIFO planted
// there must not block a reader, a symlink must not lead outside, and a huge
// file (or a link to /dev/zero) must not exhaust memory.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is returned for anything but a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is returned for a file longer than the caller allows.
var ErrTooLarge = errors.New("file is larger than any valid one")

// ReadFile reads path, which must be a regular file (not followed through a
// symlink) of at most max bytes. Raw system calls rather than os.File: the
// mount reads a directory ID file at the first listing or lookup of every
// directory, and os.File's poller registration (epoll_ctl, fcntl) doubled
// the system calls of each read.
func ReadFile(path string, max int64) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, &TypeError{Name: path, Want: unix.S_IFREG, Found: unix.S_IFLNK}
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return readAll(fd, path, max)
}

// readAll reads the regular file open at fd, at most max bytes.
func readAll(fd int, path string, max int64) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &TypeError{Name: path, Want: unix.S_IFREG, Found: st.Mode & unix.S_IFMT}
	}
	if st.Size > max {
		return nil, fmt.Errorf("%s: %w (over %d bytes)", path, ErrTooLarge, max)
	}
	// The size may change under a sync client: read up to max+1 bytes
	// whatever fstat said, and judge by what arrives.
	b := make([]byte, max+1)
	n := 0
	for n < len(b) {
		m, err := unix.Read(fd, b[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if int64(n) > max {
		return nil, fmt.Errorf("%s: %w (over %d bytes)", path, ErrTooLarge, max)
	}
	return b[:n], nil
}
