package tests

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sealfs "github.com/sealfs/sealfs/fs"
)

// A second mount of a mounted vault is refused, whatever path names the
// cipher folder, with a message naming the existing mountpoint; once the
// first is unmounted the vault mounts again.
func TestFSSecondMountRefused(t *testing.T) {
	m := newMount(t, mountOpts{})
	mustWrite(t, m.p("f"), []byte("x"))
	other := filepath.Join(t.TempDir(), "mnt2")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	alias := filepath.Join(t.TempDir(), "alias")
	if err := os.Symlink(m.cipher, alias); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{m.cipher, alias, m.cipher + "/."} {
		srv, err := sealfs.Mount(other, sealfs.Options{CipherDir: dir, Keys: m.keys, Log: slog.New(slog.DiscardHandler)})
		if err == nil {
			srv.Unmount()
			t.Fatalf("second mount through %s accepted", dir)
		}
		var inUse *sealfs.InUseError
		if !errors.As(err, &inUse) || inUse.Mountpoint != m.mnt || !strings.Contains(err.Error(), m.mnt) {
			t.Fatalf("second mount through %s: %v, want an InUseError naming %s", dir, err, m.mnt)
		}
	}
	if mp, ok := sealfs.MountedAt(alias); !ok || mp != m.mnt {
		t.Errorf("MountedAt(alias) = %q %v", mp, ok)
	}
	m.unmount()
	if _, ok := sealfs.MountedAt(m.cipher); ok {
		t.Error("MountedAt still finds the vault after unmount")
	}
	srv, err := sealfs.Mount(other, sealfs.Options{CipherDir: alias, Keys: m.keys, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("mount after the first was unmounted: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(other, "f")); err != nil || string(b) != "x" {
		t.Errorf("read through the new mount: %q %v", b, err)
	}
	if err := srv.Unmount(); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
}
