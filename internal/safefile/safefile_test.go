package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	os.WriteFile(ok, []byte("0123456789"), 0o644)
	if b, err := ReadFile(ok, 10); err != nil || string(b) != "0123456789" {
		t.Fatalf("regular file: %q %v", b, err)
	}
	if _, err := ReadFile(ok, 9); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadFile(fifo, 10); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) {
			t.Errorf("fifo: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	link := filepath.Join(dir, "link")
	os.Symlink(ok, link)
	if _, err := ReadFile(link, 10); !errors.Is(err, ErrNotRegular) {
		t.Errorf("symlink: %v", err)
	}
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	if _, err := ReadFile(zero, 10); !errors.Is(err, ErrNotRegular) {
		t.Errorf("symlink to /dev/zero: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
