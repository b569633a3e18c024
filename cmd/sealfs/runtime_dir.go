package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// runtimeDir is where mount daemons keep their control sockets and logs:
// $XDG_RUNTIME_DIR/sealfs, else /run/user/UID/sealfs, else
// $TMPDIR/sealfs-UID. It must be ours and private: whoever can connect to a
// control socket can lock the mount.
func runtimeDir() (string, error) {
	uid := os.Getuid()
	var dir string
	switch base := os.Getenv("XDG_RUNTIME_DIR"); {
	case base != "":
		dir = filepath.Join(base, "sealfs")
	case dirExists(fmt.Sprintf("/run/user/%d", uid)):
		dir = fmt.Sprintf("/run/user/%d/sealfs", uid)
	default:
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("sealfs-%d", uid))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != uid || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("runtime directory %s must be a directory owned by uid %d with mode 0700", dir, uid)
	}
	return dir, nil
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// mountFiles names the control socket and log of the daemon serving
// mountpoint (an absolute, cleaned path): one daemon per mountpoint.
type mountFiles struct {
	sock, log string
}

func filesFor(mountpoint string) (mountFiles, error) {
	dir, err := runtimeDir()
	if err != nil {
		return mountFiles{}, err
	}
	sum := sha256.Sum256([]byte(mountpoint))
	id := hex.EncodeToString(sum[:8])
	return mountFiles{sock: filepath.Join(dir, id+".sock"), log: filepath.Join(dir, id+".log")}, nil
}

// absDir returns p as an absolute, symlink-free path to a directory.
func absDir(p, what string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s %s is not a directory", what, p)
	}
	return abs, nil
}

var errNotMounted = errors.New("not mounted by sealfs")
