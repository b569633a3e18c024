package fs

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenBackingReadOnlyFile checks the 0444 path of a non-root daemon:
// read opens fall back to O_RDONLY, write opens add u+w for the open(2) and
// restore the mode. It drops to uid 65534 on one locked OS thread with
// setfsuid(2), so it needs root to start with.
func TestOpenBackingReadOnlyFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch the filesystem uid")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir makes 0700 parents
	p := filepath.Join(dir, "ro")
	if err := os.WriteFile(p, []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	os.Chown(p, 65534, 65534)
	os.Chmod(p, 0o444)
	r := &root{log: slog.New(slog.DiscardHandler)}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	type result struct {
		roW, rwW     bool
		roErr, rwErr error
		mode         os.FileMode
	}
	done := make(chan result)
	go func() {
		// Never unlocked: the thread with the changed fsuid dies with
		// this goroutine instead of returning to the scheduler.
		runtime.LockOSThread()
		var res result
		unix.Setfsgid(65534)
		unix.Setfsuid(65534)
		f, w, err := r.openRegular(dfd, "ro", p, false)
		res.roW, res.roErr = w, err
		if f != nil {
			f.Close()
		}
		f, w, err = r.openRegular(dfd, "ro", p, true)
		res.rwW, res.rwErr = w, err
		if f != nil {
			if _, err := f.WriteAt([]byte("y"), 0); err != nil {
				res.rwErr = err
			}
			f.Close()
		}
		if st, err := os.Stat(p); err == nil {
			res.mode = st.Mode().Perm()
		}
		done <- res
	}()
	res := <-done
	if res.roErr != nil || res.roW {
		t.Errorf("read open: writable=%v err=%v, want read-only fd", res.roW, res.roErr)
	}
	if res.rwErr != nil || !res.rwW {
		t.Errorf("write open: writable=%v err=%v, want writable fd", res.rwW, res.rwErr)
	}
	if res.mode != 0o444 {
		t.Errorf("mode after write open %o, want 0444 restored", res.mode)
	}
	if b, _ := os.ReadFile(p); string(b) != "y" {
		t.Errorf("content %q (%+v)", b, res)
	}
}
