package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func (a *app) cmdUnmount(arg string) error {
	mountpoint, err := a.unmount(arg)
	if err == nil && !a.quiet {
		fmt.Fprintf(a.stdout, "Unmounted %s; the vault's key is wiped from memory.\n", mountpoint)
	}
	return err
}

func (a *app) unmount(arg string) (string, error) {
	// No stat of the mountpoint: a crashed daemon's mount answers ENOTCONN.
	mountpoint, err := filepath.Abs(arg)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(filepath.Dir(mountpoint)); err == nil {
		mountpoint = filepath.Join(real, filepath.Base(mountpoint))
	}
	files, err := filesFor(mountpoint)
	if err != nil {
		return "", err
	}
	reply, cerr := controlRequest(files.sock, ctlUnmount, 45*time.Second)
	if cerr == nil {
		switch {
		case reply == "ok":
			return mountpoint, nil
		case strings.HasPrefix(reply, "busy "):
			return "", errors.New(strings.TrimPrefix(reply, "busy "))
		default:
			return "", fmt.Errorf("unmounting %s: %s", mountpoint, strings.TrimPrefix(reply, "error "))
		}
	}
	a.log.Debug("no sealfs daemon answers; trying the kernel", "socket", files.sock, "err", cerr)
	// No daemon answers (it crashed, or it is another program's mount):
	// unmount through the kernel so the mountpoint is usable again.
	fstype, ok := mountType(mountpoint)
	if !ok {
		return "", fmt.Errorf("%s: %w", mountpoint, errNotMounted)
	}
	if !strings.HasPrefix(fstype, "fuse") {
		return "", fmt.Errorf("%s is a %s mount, not sealfs", mountpoint, fstype)
	}
	if err := kernelUnmount(mountpoint); err != nil {
		if isBusy(err) {
			return "", busyError(mountpoint)
		}
		return "", fmt.Errorf("unmounting %s: %w", mountpoint, err)
	}
	return mountpoint, nil
}

// kernelUnmount uses umount2 as root, else the setuid fusermount helper.
func kernelUnmount(mountpoint string) error {
	if os.Geteuid() == 0 {
		return unix.Unmount(mountpoint, 0)
	}
	for _, helper := range []string{"fusermount3", "fusermount"} {
		path, err := exec.LookPath(helper)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-u", mountpoint).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %s", helper, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return errors.New("no fusermount3 or fusermount found")
}

// mountType returns the file system type of the mount at exactly path.
func mountType(path string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	typ, found := "", false
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMount(fields[4]) != path {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				typ, found = fields[i+1], true // the last match is the top mount
			}
		}
	}
	return typ, found
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
