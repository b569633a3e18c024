package fs

import (
	"errors"
	"os"
	"syscall"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/safefile"
)

// toErrno is the one place where Go errors become FUSE status codes.
// Authentication and format failures of stored bytes become EIO: the caller
// gets an honest I/O error (never garbage), and the layer that detected it has
// already logged the cipher path (issue 4 §5). Everything else keeps the errno
// the backing store gave, so ENOSPC, EDQUOT, EACCES… reach the caller intact.
//
// An entry of the wrong type in the cipher folder answers as its TypeError
// says: ELOOP for a symlink (as O_NOFOLLOW would), EIO for anything else.
// An error of no known kind is EIO too, never go-fuse's conversion, which
// answers ENOSYS and prints to the daemon's stderr behind slog's back.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var te *safefile.TypeError
	if errors.As(err, &te) {
		return te.Errno()
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case errors.Is(err, crypto.ErrNameInvalid):
		return syscall.EINVAL
	case errors.Is(err, os.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, os.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, os.ErrClosed):
		return syscall.EBADF
	}
	// crypto.ErrAuth, ErrTruncated, ErrFormat, ErrNameAuth, VersionError,
	// safefile.ErrTooLarge, ErrBadComponent, dirent.ErrSideFile, and
	// whatever else: the stored bytes cannot be used.
	return syscall.EIO
}
