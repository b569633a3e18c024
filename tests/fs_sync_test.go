package tests

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// copyFile copies the cipher object src (regular file, or a symlink as a
// symlink) to dst, as a sync service writes a conflict copy.
func copyCipher(t *testing.T, src, dst string) {
	t.Helper()
	if target, err := os.Readlink(src); err == nil {
		if err := os.Symlink(target, dst); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func listNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// Conflict copies that sync services leave (files, a symlink, a long name)
// are shown next to the original under display names, read as the copy's
// version, and can be resolved from the mount; sync services' own files are
// not shown and not logged.
func TestFSConflictCopiesShown(t *testing.T) {
	m := newMount(t, mountOpts{})
	long := strings.Repeat("long name ", 20) + ".txt"
	mustWrite(t, m.p("report.pdf"), []byte("version A"))
	mustWrite(t, m.p(long), []byte("long A"))
	if err := os.Symlink("target-A", m.p("link")); err != nil {
		t.Fatal(err)
	}
	repCipher, longCipher, linkCipher := m.cipherOf("report.pdf"), m.cipherOf(long), m.cipherOf("link")
	// The losing versions, as the sync services name them.
	v := filepath.Join(t.TempDir(), "v")
	copyCipher(t, repCipher, v)
	mustWrite(t, m.p("report.pdf"), []byte("version B, the winner"))
	copyCipher(t, v, repCipher+".sync-conflict-20261202-130124-CAVCEQA")
	copyCipher(t, v, repCipher+" (Alice's conflicted copy 2026-12-02)")
	copyCipher(t, v, repCipher+" (conflicted copy 2026-12-02 120000)")
	copyCipher(t, v, repCipher+" (1)")
	lv := filepath.Join(t.TempDir(), "lv")
	copyCipher(t, longCipher, lv)
	mustWrite(t, m.p(long), []byte("long B"))
	dir, base := filepath.Split(longCipher)
	copyCipher(t, lv, filepath.Join(dir, "sealfs.ln.sync-conflict-20261202-130124-CAVCEQA."+strings.TrimPrefix(base, "sealfs.ln.")))
	copyCipher(t, linkCipher, linkCipher+".sync-conflict-20261202-130124-CAVCEQA")
	// Housekeeping of Syncthing, Dropbox and Windows.
	os.Mkdir(filepath.Join(m.cipher, ".stfolder"), 0o755)
	mustWrite(t, filepath.Join(m.cipher, ".syncthing."+filepath.Base(repCipher)+".tmp"), []byte("partial"))
	mustWrite(t, filepath.Join(m.cipher, "desktop.ini"), []byte("x"))
	mustWrite(t, filepath.Join(m.cipher, ".dropbox"), []byte("x"))
	time.Sleep(1100 * time.Millisecond) // past the entry timeout

	want := []string{
		long,
		"link",
		"link (conflict 2026-12-02 130124 CAVCEQA)",
		strings.Repeat("long name ", 20) + " (conflict 2026-12-02 130124 CAVCEQA).txt",
		"report (conflict 1).pdf",
		"report (conflict 2026-12-02 120000).pdf",
		"report (conflict 2026-12-02 130124 CAVCEQA).pdf",
		"report (conflict 2026-12-02 Alice).pdf",
		"report.pdf",
	}
	sort.Strings(want)
	if got := listNames(t, m.mnt); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("listing:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, name := range want {
		switch {
		case strings.HasPrefix(name, "report (conflict"):
			if b := mustRead(t, m.p(name)); string(b) != "version A" {
				t.Errorf("%s reads %q", name, b)
			}
		case strings.HasPrefix(name, "long name") && strings.Contains(name, "(conflict"):
			if b := mustRead(t, m.p(name)); string(b) != "long A" {
				t.Errorf("long copy reads %q", b)
			}
		case strings.HasPrefix(name, "link (conflict"):
			if tgt, err := os.Readlink(m.p(name)); err != nil || tgt != "target-A" {
				t.Errorf("symlink copy: %q %v", tgt, err)
			}
		}
	}
	if b := mustRead(t, m.p("report.pdf")); string(b) != "version B, the winner" {
		t.Errorf("winner reads %q", b)
	}
	logs := m.logs.String()
	if n := strings.Count(logs, "conflict copy"); n != 6 {
		t.Errorf("%d conflict copy log lines, want one per copy (6):\n%s", n, logs)
	}
	for _, secret := range []string{"report", "long name", "target-A"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a plaintext name (%s) in the daemon's log:\n%s", secret, logs)
		}
	}
	for _, quiet := range []string{".stfolder", "desktop.ini", ".syncthing", ".dropbox"} {
		if strings.Contains(logs, quiet) {
			t.Errorf("housekeeping file %s logged:\n%s", quiet, logs)
		}
	}
	// A lookup of a copy's name without a listing first.
	m.remount(mountOpts{})
	if b := mustRead(t, m.p("report (conflict 2026-12-02 Alice).pdf")); string(b) != "version A" {
		t.Errorf("looked-up copy reads %q", b)
	}
	// Resolve: keep Alice's version, drop the others.
	if err := os.Rename(m.p("report (conflict 2026-12-02 Alice).pdf"), m.p("report.pdf")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"report (conflict 1).pdf", "report (conflict 2026-12-02 120000).pdf",
		"report (conflict 2026-12-02 130124 CAVCEQA).pdf", "link (conflict 2026-12-02 130124 CAVCEQA)"} {
		if err := os.Remove(m.p(name)); err != nil {
			t.Fatalf("removing %s: %v", name, err)
		}
	}
	if b := mustRead(t, m.p("report.pdf")); string(b) != "version A" {
		t.Errorf("after resolving, report.pdf reads %q", b)
	}
	// The long name's original goes first: its copy keeps its name through
	// the original's side file.
	if err := os.Remove(m.p(long)); err != nil {
		t.Fatal(err)
	}
	longCopy := strings.Repeat("long name ", 20) + " (conflict 2026-12-02 130124 CAVCEQA).txt"
	if b := mustRead(t, m.p(longCopy)); string(b) != "long A" {
		t.Errorf("long copy after its original was removed: %q", b)
	}
	if err := os.Rename(m.p(longCopy), m.p(long)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listNames(t, m.mnt), ","); got != "link,"+long+",report.pdf" {
		t.Errorf("after resolving everything: %s", got)
	}
	if b := mustRead(t, m.p(long)); string(b) != "long A" {
		t.Errorf("long name after resolving: %q", b)
	}
	m.unmount()
	// Nothing left over but the entries and their metadata.
	var side int
	for _, f := range m.cipherFiles() {
		if strings.HasSuffix(f, crypto.LongNameSuffix) {
			side++
		}
	}
	if side != 1 {
		t.Errorf("%d long-name side files left, want 1: %q", side, m.cipherFiles())
	}
}

// A conflict copy of a directory that lacks its own sealfs.dirid (the sync
// service copied the entries, not the ID file) takes the ID derived from
// its original's name: its entries decrypt.
func TestFSConflictCopyOfDirectory(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("photos"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("photos", "a.jpg"), []byte("jpeg"))
	src := m.cipherOf("photos")
	fileCipher := m.cipherOf("photos/a.jpg")
	dst := src + " (1)"
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	copyCipher(t, fileCipher, filepath.Join(dst, filepath.Base(fileCipher)))
	time.Sleep(1100 * time.Millisecond)
	if got := strings.Join(listNames(t, m.mnt), ","); got != "photos,photos (conflict 1)" {
		t.Fatalf("root lists %q", got)
	}
	if b := mustRead(t, m.p("photos (conflict 1)", "a.jpg")); string(b) != "jpeg" {
		t.Errorf("file in the directory copy reads %q", b)
	}
}

// A directory whose sealfs.dirid is missing (not synced yet, or left behind
// by a rename on another device) refuses new names (EAGAIN: they would be
// encrypted under a guess); its entries stay readable, and entries
// encrypted under another directory's ID are found and shown.
func TestFSMissingDirIDRefusesWritesAndFindsEntries(t *testing.T) {
	m := newMount(t, mountOpts{})
	for _, d := range []string{"a", "a/inner", "b"} {
		if err := os.Mkdir(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, m.p("a", "inner", "old"), []byte("old file"))
	// Device A renamed a/inner to b/moved (its ID moves along) ...
	innerCipher := m.cipherOf("a/inner")
	if err := os.Rename(m.p("a", "inner"), m.p("b", "moved")); err != nil {
		t.Fatal(err)
	}
	movedCipher := m.cipherOf("b/moved")
	// ... while device B wrote a/inner/new; the sync brings the directory
	// back under its old name with B's file and without its dirid.
	mustWrite(t, m.p("b", "moved", "new"), []byte("written on B"))
	newCipher := m.cipherOf("b/moved/new")
	if err := os.Mkdir(innerCipher, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newCipher, filepath.Join(innerCipher, filepath.Base(newCipher))); err != nil {
		t.Fatal(err)
	}
	_ = movedCipher
	time.Sleep(1100 * time.Millisecond)
	if got := strings.Join(listNames(t, m.p("a", "inner")), ","); got != "new" {
		t.Fatalf("a/inner lists %q, want B's file", got)
	}
	if b := mustRead(t, m.p("a", "inner", "new")); string(b) != "written on B" {
		t.Errorf("B's file reads %q", b)
	}
	err := os.WriteFile(m.p("a", "inner", "more"), []byte("x"), 0o644)
	if !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("create in a directory without its ID file: %v, want EAGAIN", err)
	}
	if err := os.Mkdir(m.p("a", "inner", "sub"), 0o755); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("mkdir in a directory without its ID file: %v, want EAGAIN", err)
	}
	if !strings.Contains(m.logs.String(), "new names refused") {
		t.Errorf("the refusal is not logged:\n%s", m.logs.String())
	}
	// Renaming the entry out works; the directory is then empty.
	if err := os.Rename(m.p("a", "inner", "new"), m.p("b", "moved", "new")); err != nil {
		t.Fatalf("moving B's file to the directory it belongs to: %v", err)
	}
	if b := mustRead(t, m.p("b", "moved", "new")); string(b) != "written on B" {
		t.Errorf("moved file reads %q", b)
	}
}

// A directory removed on one device while another wrote into it comes back
// with the new file and without its sealfs.dirid, whose ID then exists
// nowhere in the vault (the directory had been renamed, so the ID cannot be
// derived from its name either). The mount's record of the IDs it read in
// earlier mounts still names the file; without the record it stays hidden.
func TestFSRemovedDirIDFoundInRecord(t *testing.T) {
	record := filepath.Join(t.TempDir(), "state", "dirids")
	m := newMount(t, mountOpts{idRecord: record})
	if err := os.MkdirAll(m.p("a", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(m.p("a", "d"), m.p("a", "e")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("a", "e", "old"), []byte("old"))
	mustWrite(t, m.p("a", "e", "new"), []byte("written on B"))
	eCipher, oldCipher := m.cipherOf("a/e"), m.cipherOf("a/e/old")
	m.unmount()
	// Device A removed everything of e; B's new file brought the
	// directory back without its ID file.
	for _, p := range []string{oldCipher, filepath.Join(eCipher, crypto.DirIDFile)} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	m.remount(mountOpts{})
	if got := listNames(t, m.p("a", "e")); len(got) != 0 {
		t.Fatalf("without the record a/e lists %q", got)
	}
	m.remount(mountOpts{idRecord: record})
	if got := strings.Join(listNames(t, m.p("a", "e")), ","); got != "new" {
		t.Fatalf("with the record a/e lists %q, want B's file", got)
	}
	if b := mustRead(t, m.p("a", "e", "new")); string(b) != "written on B" {
		t.Errorf("B's file reads %q", b)
	}
}
