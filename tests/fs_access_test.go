package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const nobody = 65534

// asNobody runs a shell command as uid/gid 65534 and returns its output.
func asNobody(t *testing.T, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestFSOtherUsers: only the mounting user may enter the mount unless
// AllowOther; with it, the plaintext modes decide (default_permissions).
func TestFSOtherUsers(t *testing.T) {
	m := newMount(t, mountOpts{})
	// t.TempDir makes 0700 directories; let nobody reach the mount point.
	for d := filepath.Dir(m.mnt); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, m.p("public"), []byte("readable"))
	mustWrite(t, m.p("secret"), []byte("s"))
	os.Chmod(m.p("secret"), 0o600)
	if out, err := asNobody(t, "ls "+m.mnt); err == nil {
		t.Fatalf("uid %d listed the mount without AllowOther: %s", nobody, out)
	}
	m.remount(mountOpts{allowOther: true})
	out, err := asNobody(t, "ls "+m.mnt+" && cat "+m.p("public"))
	if err != nil || !strings.Contains(out, "secret") || !strings.Contains(out, "readable") {
		t.Fatalf("with AllowOther: %v\n%s", err, out)
	}
	if out, err := asNobody(t, "cat "+m.p("secret")); err == nil {
		t.Fatalf("nobody read a 0600 root file: %s", out)
	}
	if out, err := asNobody(t, "echo x >> "+m.p("public")); err == nil {
		t.Fatalf("nobody wrote a 0644 root file: %s", out)
	}
	if out, err := asNobody(t, "touch "+m.p("new")); err == nil {
		t.Fatalf("nobody created a file in a 0755 root dir: %s", out)
	}
	// A directory nobody owns: files it creates are its own.
	os.Mkdir(m.p("nobodys"), 0o755)
	os.Chown(m.p("nobodys"), nobody, nobody)
	if out, err := asNobody(t, "echo hi > "+m.p("nobodys", "f")+" && mkdir "+m.p("nobodys", "d")); err != nil {
		t.Fatalf("nobody writing in its dir: %v %s", err, out)
	}
	for _, p := range []string{m.p("nobodys", "f"), m.p("nobodys", "d")} {
		st, err := os.Stat(p)
		if err != nil || st.Sys().(*syscall.Stat_t).Uid != nobody {
			t.Fatalf("%s: owner %v (%v), want %d", p, st.Sys().(*syscall.Stat_t).Uid, err, nobody)
		}
	}
}

// TestFSSetIDCleared: writes, truncates and fallocate by an unprivileged
// user, and chown by root, clear set-user-ID and set-group-ID bits exactly
// as the kernel does on a local filesystem. sealfs clears them itself (FUSE
// HANDLE_KILLPRIV_V2, fs/killpriv.go), so the test compares the mount with a
// plain directory, operation by operation.
func TestFSSetIDCleared(t *testing.T) {
	m := newMount(t, mountOpts{allowOther: true})
	plain := t.TempDir()
	for _, top := range []string{m.mnt, plain} {
		for d := top; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
	ops := []struct {
		name   string
		nobody bool
		script string // run in the directory, on file f
	}{
		{"write", true, "echo more >> f"},
		{"truncate", true, "truncate -s 1 f"},
		{"open O_TRUNC", true, ": > f"},
		{"fallocate", true, "fallocate -l 100000 f"},
		{"write as root", false, "echo more >> f"},
		{"chown", false, "chown 65534 f"},
	}
	modeAfter := func(dir string, mode os.FileMode, script string, asOther bool) os.FileMode {
		t.Helper()
		f := filepath.Join(dir, "f")
		os.Remove(f)
		mustWrite(t, f, []byte("data\n"))
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
		var out string
		var err error
		if asOther {
			out, err = asNobody(t, "cd "+dir+" && "+script)
		} else {
			var b []byte
			// cd after exec, not cmd.Dir: see TestFSUnmountBusy.
			cmd := exec.Command("/bin/sh", "-c", "cd "+dir+" && "+script)
			b, err = cmd.CombinedOutput()
			out = string(b)
		}
		if err != nil {
			t.Fatalf("%s in %s: %v %s", script, dir, err, out)
		}
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode()
	}
	for _, mode := range []os.FileMode{0o777 | os.ModeSetuid | os.ModeSetgid, 0o777 | os.ModeSetuid,
		0o777 | os.ModeSetgid, 0o767 | os.ModeSetgid} {
		for _, op := range ops {
			want := modeAfter(plain, mode, op.script, op.nobody)
			if got := modeAfter(m.mnt, mode, op.script, op.nobody); got != want {
				t.Errorf("%v, %s: mode %v on the mount, %v on a local filesystem", mode, op.name, got, want)
			}
		}
	}
}
