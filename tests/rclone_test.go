package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sealfs/sealfs/internal/syncnames"
)

// rclone is the other sync client Debian ships (1.60.1 in bookworm): these
// tests measure it local to local, which is as much as it can carry to any
// remote (a cloud backend may keep less).

func requireRclone(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("rclone"); err != nil {
		t.Skip("rclone not installed (Debian: apt install rclone)")
	}
}

// runRclone runs rclone with an empty config of its own and HOME in a temp
// directory, so nothing of the machine's rclone setup is used or written.
func runRclone(t testing.TB, home string, args ...string) string {
	t.Helper()
	cfg := filepath.Join(home, "rclone.conf")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rclone", append([]string{"--config", cfg}, args...)...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rclone %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func rcloneVersion(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("rclone", "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[1]
}

// TestRclonePreserves: what `rclone sync` keeps by default and with
// --links --metadata (-l -M), docs/sync.md's rclone columns.
func TestRclonePreserves(t *testing.T) {
	requireRclone(t)
	base := t.TempDir()
	src := filepath.Join(base, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	makePreserveFixture(t, src)
	version := rcloneVersion(t)

	plain := filepath.Join(base, "plain")
	runRclone(t, base, "sync", src, plain)
	checkPreserve(t, "rclone "+version+" sync", measurePreserve(src, plain), map[string]bool{
		"file bytes (1 MiB, 0 bytes)":                          true,
		"names of 255 bytes (file, directory)":                 true,
		"file mtime, to the second":                            true,
		"file mtime, nanoseconds":                              true,
		"file modes (600, 640, 755, 444)":                      false,
		"setuid bit":                                           false,
		"owner and group (1234:5678)":                          false,
		"extended attributes (user.*)":                         false,
		"symlinks (relative, absolute, dangling), as symlinks": false,
		"symlink mtime":                                        false,
		"hard links (one inode)":                               false,
		"empty directory":                                      false,
		"directory mode (750)":                                 false,
		"directory mtime":                                      false,
		"FIFO":                                                 false,
		"sparse file (8 MiB, one block written)":               false,
	})

	meta := filepath.Join(base, "meta")
	runRclone(t, base, "sync", "--links", "--metadata", "--create-empty-src-dirs", src, meta)
	checkPreserve(t, "rclone "+version+" sync -l -M --create-empty-src-dirs", measurePreserve(src, meta), map[string]bool{
		"file bytes (1 MiB, 0 bytes)":                          true,
		"names of 255 bytes (file, directory)":                 true,
		"file mtime, to the second":                            true,
		"file mtime, nanoseconds":                              true,
		"file modes (600, 640, 755, 444)":                      true,
		"setuid bit":                                           false,
		"owner and group (1234:5678)":                          true,
		"extended attributes (user.*)":                         true,
		"symlinks (relative, absolute, dangling), as symlinks": true,
		"symlink mtime":                                        true,
		"hard links (one inode)":                               false,
		"empty directory":                                      true,
		"directory mode (750)":                                 false,
		"directory mtime":                                      false,
		"FIFO":                                                 false,
		"sparse file (8 MiB, one block written)":               false,
	})
}

// TestRcloneBisyncConflict: rclone bisync (1.58-1.65) renames both sides of
// a conflict to NAME..path1 and NAME..path2, so the original name is gone;
// internal/syncnames reads both back.
func TestRcloneBisyncConflict(t *testing.T) {
	requireRclone(t)
	base := t.TempDir()
	p1, p2 := filepath.Join(base, "p1"), filepath.Join(base, "p2")
	for _, d := range []string{p1, p2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{stCipherName, stLongName, "sealfs.vault"}
	for _, n := range names {
		writeAt(t, filepath.Join(p1, n), "base", time.Time{})
	}
	runRclone(t, base, "bisync", p1, p2, "--resync")
	for _, n := range names {
		writeAt(t, filepath.Join(p1, n), "from p1", time.Time{})
		writeAt(t, filepath.Join(p2, n), "from p2, longer", time.Time{})
	}
	// --force: every file changed, which bisync otherwise refuses.
	runRclone(t, base, "bisync", p1, p2, "--force")
	for _, d := range []string{p1, p2} {
		got := syncthingListDir(t, d)
		sort.Strings(got)
		t.Logf("%s after the conflict: %q", filepath.Base(d), got)
		var want []string
		for _, n := range names {
			want = append(want, n+"..path1", n+"..path2")
		}
		sort.Strings(want)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
		for _, n := range got {
			cs := syncnames.ParseConflict(n)
			if len(cs) == 0 || cs[0].Service() != syncnames.Rclone || !contains(names, cs[0].Original) {
				t.Errorf("syncnames does not read %s: %+v", n, cs)
			}
		}
		wantContent(t, d, map[string]string{stCipherName + "..path1": "from p1", stCipherName + "..path2": "from p2, longer"})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
