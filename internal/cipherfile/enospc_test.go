package cipherfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// smallFS mounts a 1 MiB tmpfs, or skips the test where mounting is not
// allowed (not root, no CAP_SYS_ADMIN, a restrictive container).
func smallFS(t *testing.T) string {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// On a full disk, writes fail with ENOSPC before writing anything: the File
// and the cipher file are unchanged, and the file still closes complete.
func TestENOSPCLeavesNoTornBlock(t *testing.T) {
	e := newEnv(t)
	e.path = filepath.Join(smallFS(t), "c")
	f := e.create()
	var want []byte
	chunk := pattern(100_000, 6)
	var err error
	for len(want) < 4<<20 {
		if _, err = f.WriteAt(chunk, int64(len(want))); err != nil {
			break
		}
		want = append(want, chunk...)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling a 1 MiB tmpfs: %v, want ENOSPC", err)
	}
	t.Logf("ENOSPC after %d plaintext bytes", len(want))
	before, _ := os.ReadFile(e.path)
	// A write far past the end (hole fill) and a growth must fail the same
	// way, with nothing written.
	if _, err := f.WriteAt([]byte("x"), 10<<20); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("hole-filling write on a full disk: %v", err)
	}
	if err := f.Truncate(8 << 20); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("growth on a full disk: %v", err)
	}
	if after, _ := os.ReadFile(e.path); !bytes.Equal(before, after) || f.Size() != int64(len(want)) {
		t.Fatalf("failed writes changed the file: size %d, want %d", f.Size(), len(want))
	}
	if got := readAll(t, f); !bytes.Equal(got, want) {
		t.Fatal("contents changed by failed writes")
	}
	// Overwrites need no new space and still work.
	mustWrite(t, f, []byte("overwrite"), 5)
	copy(want[5:], "overwrite")
	if err := f.Close(); err != nil {
		t.Fatalf("Close on a full disk: %v (the tail's space was reserved)", err)
	}
	if got, err := e.decryptDisk(); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("cipher file after ENOSPC: %v", err)
	}
}
