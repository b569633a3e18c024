package fs

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// One mount per vault per machine. Two mounts of one cipher folder each keep
// their own engine per open file (tail block in memory, size, write-behind):
// alternating appends through two mountpoints made each overwrite the
// other's final block, and the file read back EIO with the appended data
// lost (issue 13). So a mount holds a machine-wide lock on the cipher
// directory's identity (device and inode, which every path to it shares)
// for its whole life.
//
// The lock is an abstract unix socket named after that identity: bound by
// the mount, released by the kernel when the mount's process ends however
// it ends, no file anywhere (not in the synced folder, which would sync it,
// nor in a per-user directory, which another user's mount would not see).
// flock on the directory cannot serve: header updates (passwd, enroll) take
// an exclusive flock on it, and must work while the vault is mounted. The
// name is visible to every local user, who could bind it first and so keep
// this vault from mounting: a local denial of service, nothing more. It is
// per network namespace, so the mount table is checked too; a mount in
// another mount and network namespace at once (a container) is not seen.

// InUseError is returned by Mount when the vault is mounted already.
type InUseError struct {
	CipherDir  string
	Mountpoint string // "" when the other mount is not visible here
}

func (e *InUseError) Error() string {
	if e.Mountpoint != "" {
		return fmt.Sprintf("%s is already mounted at %s (one mount per vault; `sealfs unmount %s` first)",
			e.CipherDir, e.Mountpoint, e.Mountpoint)
	}
	return fmt.Sprintf("%s is already mounted by another sealfs process on this machine (one mount per vault)", e.CipherDir)
}

// lockName is the abstract socket name for the directory st describes.
func lockName(st *unix.Stat_t) string {
	return fmt.Sprintf("@sealfs/vault/%d:%d", st.Dev, st.Ino)
}

// lockVault takes the lock for the cipher directory open at rootfd.
func lockVault(rootfd int, cipherDir string) (release func(), err error) {
	var st unix.Stat_t
	if err := unix.Fstat(rootfd, &st); err != nil {
		return nil, err
	}
	// The socket's name is per network namespace: a mount started in
	// another one (a container, systemd's PrivateNetwork=) would not see
	// it, so the mount table of this mount namespace is asked as well.
	if mp, ok := MountedAt(cipherDir); ok {
		return nil, &InUseError{CipherDir: cipherDir, Mountpoint: mp}
	}
	l, err := net.Listen("unix", lockName(&st))
	if errors.Is(err, syscall.EADDRINUSE) {
		mp, _ := MountedAt(cipherDir)
		return nil, &InUseError{CipherDir: cipherDir, Mountpoint: mp}
	}
	if err != nil {
		return nil, fmt.Errorf("locking the vault against a second mount: %w", err)
	}
	return func() { l.Close() }, nil
}

// MountedAt returns where the cipher directory cipherDir is mounted by
// sealfs, if it is visible in this process's mount table: a fuse.sealfs
// mount whose source is the same directory (same device and inode, whatever
// path was used to name it).
func MountedAt(cipherDir string) (string, bool) {
	var want unix.Stat_t
	if unix.Stat(cipherDir, &want) != nil {
		return "", false
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		mp, fstype, source, ok := parseMountinfo(s.Text())
		if !ok || fstype != "fuse.sealfs" {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(source, &st) == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			return mp, true
		}
	}
	return "", false
}

// parseMountinfo reads the mount point, filesystem type and source of one
// /proc/PID/mountinfo line (proc(5): the optional fields end with "-").
func parseMountinfo(line string) (mountpoint, fstype, source string, ok bool) {
	f := strings.Fields(line)
	for i := 6; i < len(f); i++ {
		if f[i] == "-" && i+2 < len(f) && len(f) > 4 {
			return unescapeMountinfo(f[4]), f[i+1], unescapeMountinfo(f[i+2]), true
		}
	}
	return "", "", "", false
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
