package fs

import (
	"errors"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/sealfs/sealfs/crypto"
)

// toErrno is the one place where Go errors become FUSE status codes.
// Authentication and format failures of stored bytes become EIO: the caller
// gets an honest I/O error (never garbage), and the layer that detected it has
// already logged the cipher path (issue 4 §5). Everything else keeps the errno
// the backing store gave, so ENOSPC, EDQUOT, EACCES… reach the caller intact.
func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var verr *crypto.VersionError
	switch {
	case errors.Is(err, crypto.ErrAuth), errors.Is(err, crypto.ErrTruncated),
		errors.Is(err, crypto.ErrFormat), errors.Is(err, crypto.ErrNameAuth),
		errors.As(err, &verr):
		return syscall.EIO
	case errors.Is(err, crypto.ErrNameInvalid):
		return syscall.EINVAL
	}
	return gofs.ToErrno(err)
}
