package fs

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/dirent"
	"github.com/sealfs/sealfs/internal/safefile"
)

func TestToErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{&safefile.TypeError{Name: "x", Want: unix.S_IFDIR, Found: unix.S_IFLNK}, syscall.ELOOP},
		{fmt.Errorf("wrapped: %w", &safefile.TypeError{Name: "x", Want: unix.S_IFREG, Found: unix.S_IFIFO}), syscall.EIO},
		{&os.PathError{Op: "open", Path: "x", Err: syscall.ENOSPC}, syscall.ENOSPC},
		{fmt.Errorf("x: %w", crypto.ErrAuth), syscall.EIO},
		{safefile.ErrTooLarge, syscall.EIO},
		{safefile.ErrBadComponent, syscall.EIO},
		{dirent.ErrSideFile, syscall.EIO},
		{errors.New("something new"), syscall.EIO},
		{fmt.Errorf("x: %w", os.ErrNotExist), syscall.ENOENT},
		{crypto.ErrNameInvalid, syscall.EINVAL},
	} {
		if got := toErrno(c.err); got != c.want {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
