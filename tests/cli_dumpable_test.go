package tests

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// TestCLINonDumpable: the mount daemon, while it waits for its key on fd 3,
// and a foreground mount, while it waits for its secret, are already
// non-dumpable (PR_SET_DUMPABLE 0): no core dump, and no process of the same
// user can ptrace them or open their /proc/PID/mem. The kernel shows it in
// /proc/PID's ownership: a non-dumpable process's files belong to root. So
// the test runs sealfs as an unprivileged user (it needs no TPM or FUSE
// for this: both processes block before either is used).
func TestCLINonDumpable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run sealfs as another user")
	}
	const uid, gid = 65534, 65534 // nobody
	dir, err := os.MkdirTemp("", "sealfs-dump")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The shared binary sits in a 0700 directory; nobody needs its own copy.
	bin := filepath.Join(dir, "sealfs")
	copyFile(t, sealfsBin, bin, 0o755)
	cipher := filepath.Join(dir, "cipher")
	mnt := filepath.Join(dir, "mnt")
	for _, d := range []string{cipher, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, filepath.Join("..", "crypto", "testdata", "vault-v1", crypto.HeaderFileName), filepath.Join(cipher, crypto.HeaderFileName), 0o644)
	// A FIFO nobody writes to: the foreground mount blocks opening it,
	// before it has read a recovery key.
	fifo := filepath.Join(dir, "rk.fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"), "XDG_STATE_HOME=" + filepath.Join(dir, "state")}

	start := func(t *testing.T, extra []*os.File, args ...string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		cmd.Dir = "/"
		cmd.ExtraFiles = extra
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	// A control process of the same user must show as its own, or the
	// check below proves nothing.
	sleeper := exec.Command("sleep", "30")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	waitProcOwner(t, sleeper.Process.Pid, "sleep", uid)

	t.Run("daemon", func(t *testing.T) {
		keyR, keyW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer keyW.Close()
		readyR, readyW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer readyR.Close()
		cmd := start(t, []*os.File{keyR, readyW}, "mount", "--daemon", "--", cipher, mnt)
		keyR.Close()
		readyW.Close()
		waitProcOwner(t, cmd.Process.Pid, "mount daemon waiting for its key", 0)
	})
	t.Run("foreground", func(t *testing.T) {
		cmd := start(t, nil, "mount", "-f", "--recovery-key-file", fifo, cipher, mnt)
		waitProcOwner(t, cmd.Process.Pid, "foreground mount waiting for its recovery key", 0)
	})
}

// waitProcOwner waits until /proc/PID/environ of process pid belongs to
// uid want: 0 for a non-dumpable process of another user.
func waitProcOwner(t *testing.T, pid int, what string, want uint32) {
	t.Helper()
	var got uint32
	ok := waitFor(5*time.Second, func() bool {
		fi, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			return false
		}
		got = fi.Sys().(*syscall.Stat_t).Uid
		return got == want
	})
	if !ok {
		t.Fatalf("%s (pid %d): /proc/PID/environ owned by uid %d, want %d", what, pid, got, want)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
