package tests

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFSReadOnlyMount(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("f"), []byte("data"))
	unix.Setxattr(m.p("f"), "user.a", []byte("v"), 0)
	m.remount(mountOpts{readOnly: true})
	if got := mustRead(t, m.p("f")); string(got) != "data" {
		t.Fatalf("read %q", got)
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(m.p("f"), "user.a", buf); err != nil || string(buf[:n]) != "v" {
		t.Fatalf("getxattr %q %v", buf[:n], err)
	}
	_, err := os.OpenFile(m.p("f"), os.O_WRONLY, 0)
	wantErrno(t, err, syscall.EROFS, "open for writing")
	wantErrno(t, os.Mkdir(m.p("d"), 0o755), syscall.EROFS, "mkdir")
	wantErrno(t, os.Remove(m.p("f")), syscall.EROFS, "unlink")
	wantErrno(t, unix.Setxattr(m.p("f"), "user.b", nil, 0), syscall.EROFS, "setxattr")
}

// TestFSUnmountBusy: Unmount refuses (EBUSY, still mounted) while a file is
// open or a process has its working directory inside, and then succeeds.
func TestFSUnmountBusy(t *testing.T) {
	m := newMount(t, mountOpts{})
	f, err := os.Create(m.p("open"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("unflushed?")); err != nil {
		t.Fatal(err)
	}
	err = m.srv.Unmount()
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("unmount with an open file: %v, want EBUSY", err)
	}
	t.Logf("busy message: %v", err)
	f.Close()
	os.Mkdir(m.p("cwd"), 0o755)
	// The shell changes into the mount after exec, not cmd.Dir: the daemon
	// serves from this process, and a child forked with a working
	// directory inside the mount would chdir before exec, as a vfork child
	// sharing this process's memory and blocking one of its threads, which
	// can hold up the daemon (a GC stop-the-world waits for that thread)
	// while the chdir waits for the daemon: a deadlock only tests can make.
	cmd := exec.Command("/bin/sh", "-c", `cd "$0" && echo inside && exec sleep 30`, m.p("cwd"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "inside\n" {
		t.Fatalf("the child did not enter the mount: %q", line)
	}
	err = m.srv.Unmount()
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("unmount with a cwd inside: %v, want EBUSY", err)
	}
	if got := mustRead(t, m.p("open")); string(got) != "unflushed?" {
		t.Fatalf("still mounted and readable: %q", got)
	}
	cmd.Process.Kill()
	cmd.Wait()
	m.unmount()
	m.mount()
	if got := mustRead(t, m.p("open")); string(got) != "unflushed?" {
		t.Fatalf("after remount %q", got)
	}
}

func TestFSLastActivity(t *testing.T) {
	m := newMount(t, mountOpts{})
	t0 := m.srv.LastActivity()
	if time.Since(t0) > time.Minute {
		t.Fatalf("LastActivity at mount: %v", t0)
	}
	time.Sleep(20 * time.Millisecond)
	os.Stat(m.p("nothing-here"))
	if t1 := m.srv.LastActivity(); !t1.After(t0) {
		t.Fatalf("LastActivity did not advance: %v then %v", t0, t1)
	}
}
