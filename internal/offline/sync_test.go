package offline

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// What sync services leave in a cipher folder (issue 15): their own files,
// files in flight, conflict copies, and the aftermath of races between two
// devices. fsck sorts them into classes (notes or damage), extract restores
// what the mount shows, and fsck --repair fixes what is mechanical.

// storedIn returns the stored name of plain encrypted under id, writing the
// long-name side file into cdir when it needs one.
func (v *testVault) storedIn(cdir string, id crypto.DirID, plain string) string {
	v.t.Helper()
	enc, err := v.keys.EncryptName(id, plain)
	v.must(err)
	stored, long := crypto.StoredName(enc)
	if long {
		v.must(os.WriteFile(filepath.Join(cdir, stored+crypto.LongNameSuffix), []byte(enc), 0o644))
	}
	return stored
}

// fileIn writes a cipher file named plain under id into the cipher
// directory cdir: what another device wrote there under that ID.
func (v *testVault) fileIn(cdir string, id crypto.DirID, plain string, content []byte) string {
	v.t.Helper()
	var buf bytes.Buffer
	_, err := v.keys.EncryptStream(&buf, bytes.NewReader(content))
	v.must(err)
	c := filepath.Join(cdir, v.storedIn(cdir, id, plain))
	v.must(os.WriteFile(c, buf.Bytes(), 0o644))
	return c
}

// renameDir renames the vault directory from to to as the mount does: the
// cipher directory moves with its sealfs.dirid.
func (v *testVault) renameDir(from, to string) {
	v.t.Helper()
	id := v.ids[from]
	c := v.cipher(from)
	parent, name := "", to
	if i := strings.LastIndexByte(to, '/'); i >= 0 {
		parent, name = to[:i], to[i+1:]
	}
	v.must(os.Rename(c, filepath.Join(v.cipher(parent), v.storedIn(v.cipher(parent), v.ids[parent], name))))
	v.ids[to] = id
}

func check(t *testing.T, v *testVault, record string) *Report {
	t.Helper()
	r, err := CheckWith(CheckOptions{Keys: v.keys, CipherDir: v.dir, IDRecord: record})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func extract(t *testing.T, v *testVault, record, sub string) (*Report, string) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "dest")
	r, err := Extract(ExtractOptions{Keys: v.keys, CipherDir: v.dir, Dest: dest, Path: sub, IDRecord: record})
	if err != nil {
		t.Fatal(err)
	}
	return r, dest
}

// tree lists the regular files and symlinks below dir as path → content
// (or "-> target"), and directories as path → "/".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.IsDir():
			out[rel] = "/"
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		default:
			b, _ := os.ReadFile(p)
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %q = %q, want %q", what, k, got[k], want[k])
		}
	}
}

func classes(ps []Problem) map[Class]int {
	m := map[Class]int{}
	for _, p := range ps {
		m[p.Class]++
	}
	return m
}

// Syncthing's folder marker, other services' files and the desktop's are
// ignored quietly; files in flight are notes naming the plaintext entry
// they bring; fsck exits 0 and extract restores exactly the vault.
func TestSyncServiceFilesAreNotDamage(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("docs", 0o755)
	c := v.file("docs/report.pdf", []byte("report"), 0o644)
	v.must(os.Mkdir(filepath.Join(v.dir, ".stfolder"), 0o755))
	v.must(os.WriteFile(filepath.Join(v.dir, ".stfolder", "junk"), []byte("x"), 0o644))
	v.must(os.Mkdir(filepath.Join(v.dir, ".stversions"), 0o755))
	for _, n := range []string{".stignore", "desktop.ini", ".dropbox", ".DS_Store", ".sync_3f2a.db"} {
		v.must(os.WriteFile(filepath.Join(v.dir, n), []byte("x"), 0o644))
	}
	tmp := filepath.Join(filepath.Dir(c), ".syncthing."+filepath.Base(c)+".tmp")
	v.must(os.WriteFile(tmp, []byte("partial download"), 0o644))
	v.must(os.WriteFile(filepath.Join(filepath.Dir(c), "."+filepath.Base(c)+".~3a9f"), []byte("x"), 0o644))

	r := check(t, v, "")
	if r.ExitCode() != ExitClean || r.Damaged() != 0 {
		t.Fatalf("exit %d, problems:\n%s", r.ExitCode(), problemList(r.Problems))
	}
	if r.SyncFiles != 7 {
		t.Errorf("%d sync service files counted, want 7", r.SyncFiles)
	}
	wantClass(t, r.Problems, ClassSync, KindInFlight, "docs/report.pdf")
	for _, p := range r.Problems {
		if p.Class != ClassSync {
			t.Errorf("not a sync note: %v", p)
		}
		if strings.Contains(p.CipherPath, ".syncthing.") && !strings.Contains(p.Detail, "Syncthing") {
			t.Errorf("the service is not named: %v", p)
		}
	}
	xr, dest := extract(t, v, "", "")
	if xr.ExitCode() != ExitClean {
		t.Errorf("extract: exit %d:\n%s", xr.ExitCode(), problemList(xr.Problems))
	}
	wantTree(t, "extract", tree(t, dest), map[string]string{"docs": "/", "docs/report.pdf": "report"})
}

// Conflict copies of a file, a directory, a symlink and a long name, as
// Syncthing, Dropbox, Nextcloud, Google Drive and OneDrive name them: each
// a note naming the original's and the copy's plaintext paths, checked like
// any entry, and restored by extract under the name the mount shows.
func TestConflictCopiesReportedAndExtracted(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("dir", 0o755)
	long := strings.Repeat("long name ", 20) + ".txt"
	rep := v.file("dir/report.pdf", []byte("B wins"), 0o644)
	lng := v.file("dir/"+long, []byte("long B"), 0o644)
	lnk := v.symlink("dir/link", "target-B")
	photos := v.mkdir("dir/photos", 0o755)
	v.file("dir/photos/a.jpg", []byte("jpeg B"), 0o644)

	// The losing versions, as each service names them.
	old := func(content string) []byte {
		var buf bytes.Buffer
		_, err := v.keys.EncryptStream(&buf, strings.NewReader(content))
		v.must(err)
		return buf.Bytes()
	}
	for suffix, content := range map[string]string{
		".sync-conflict-20261202-130124-CAVCEQA": "A (Syncthing)",
		" (Alice's conflicted copy 2026-12-02)":  "A (Dropbox)",
		" (conflicted copy 2026-12-02 120000)":   "A (Nextcloud)",
		" (1)":                                   "A (Google Drive)",
		"-LAPTOP":                                "A (OneDrive)",
	} {
		v.must(os.WriteFile(rep+suffix, old(content), 0o644))
	}
	dir, base := filepath.Split(lng)
	v.must(os.WriteFile(filepath.Join(dir, "sealfs.ln.sync-conflict-20261202-130124-CAVCEQA."+
		strings.TrimPrefix(base, "sealfs.ln.")), old("long A"), 0o644))
	enc, err := v.keys.EncryptSymlink("target-A")
	v.must(err)
	v.must(os.Symlink(enc, lnk+".sync-conflict-20261202-130124-CAVCEQA"))
	// A directory copy without its own sealfs.dirid: its names are under
	// the ID derived from the original's name.
	v.must(os.Mkdir(photos+" (1)", 0o755))
	v.fileIn(photos+" (1)", v.ids["dir/photos"], "a.jpg", []byte("jpeg A"))

	r := check(t, v, "")
	if r.ExitCode() != ExitClean {
		t.Fatalf("exit %d:\n%s", r.ExitCode(), problemList(r.Problems))
	}
	if r.ConflictCopies != 8 {
		t.Errorf("%d conflict copies counted, want 8:\n%s", r.ConflictCopies, problemList(r.Problems))
	}
	want := "dir/report.pdf has a conflict copy shown as dir/report (conflict 2026-12-02 130124 CAVCEQA).pdf"
	found := false
	for _, p := range r.Problems {
		found = found || strings.HasPrefix(p.Detail, want)
	}
	if !found {
		t.Errorf("no finding says %q:\n%s", want, problemList(r.Problems))
	}
	t.Logf("report:\n%s", problemList(r.Problems))
	wantClass(t, r.Problems, ClassConflict, KindConflict, "dir/photos (conflict 1)")
	wantClass(t, r.Problems, ClassSync, KindMissing, "dir/photos (conflict 1)") // its dirid
	if r.Files != 10 || r.Symlinks != 2 {
		t.Errorf("checked %d files and %d symlinks, want the copies checked too (10, 2)", r.Files, r.Symlinks)
	}

	xr, dest := extract(t, v, "", "")
	if xr.ExitCode() != ExitClean {
		t.Errorf("extract: exit %d:\n%s", xr.ExitCode(), problemList(xr.Problems))
	}
	longCopy := strings.Repeat("long name ", 20) + " (conflict 2026-12-02 130124 CAVCEQA).txt"
	wantTree(t, "extract", tree(t, dest), map[string]string{
		"dir": "/", "dir/report.pdf": "B wins", "dir/" + long: "long B", "dir/link": "-> target-B",
		"dir/photos": "/", "dir/photos/a.jpg": "jpeg B",
		"dir/report (conflict 2026-12-02 130124 CAVCEQA).pdf": "A (Syncthing)",
		"dir/report (conflict 2026-12-02 Alice).pdf":          "A (Dropbox)",
		"dir/report (conflict 2026-12-02 120000).pdf":         "A (Nextcloud)",
		"dir/report (conflict 1).pdf":                         "A (Google Drive)",
		"dir/report (conflict LAPTOP).pdf":                    "A (OneDrive)",
		"dir/" + longCopy:                                     "long A",
		"dir/link (conflict 2026-12-02 130124 CAVCEQA)":       "-> target-A",
		"dir/photos (conflict 1)":                             "/",
		"dir/photos (conflict 1)/a.jpg":                       "jpeg A",
	})
	// A sub-path through a display name, as the mount would look it up.
	_, sub := extract(t, v, "", "dir/photos (conflict 1)/a.jpg")
	wantTree(t, "extract of a copy's path", tree(t, sub), map[string]string{
		"dir": "/", "dir/photos (conflict 1)": "/", "dir/photos (conflict 1)/a.jpg": "jpeg A"})
}

// applyRepairs runs fsck --repair on r and checks that every planned
// repair was done.
func applyRepairs(t *testing.T, v *testVault, r *Report) {
	t.Helper()
	planned := r.Repairable()
	if err := Repair(v.keys, v.dir, r); err != nil {
		t.Fatal(err)
	}
	if r.Repaired() != planned || r.Repairable() != 0 {
		t.Fatalf("%d of %d repairs done:\n%s", r.Repaired(), planned, problemList(r.Problems))
	}
	for _, p := range r.Problems {
		if p.RepairError != "" {
			t.Errorf("repair failed: %v: %s", p, p.RepairError)
		}
	}
}

// wantClean checks that fsck finds nothing at all.
func wantClean(t *testing.T, v *testVault, record string) {
	t.Helper()
	r := check(t, v, record)
	if len(r.Problems) != 0 || r.ExitCode() != ExitClean {
		t.Fatalf("after the repair: exit %d:\n%s", r.ExitCode(), problemList(r.Problems))
	}
}

// A directory renamed on device A while device B wrote into it comes back
// under its old name holding B's file and no sealfs.dirid. Nothing is lost
// from extract's view; fsck says what happened and --repair restores the ID
// the names prove.
func TestRenameWhileWriting(t *testing.T) {
	t.Run("first rename", func(t *testing.T) {
		// "ren" still has the ID derived from its name, which the names
		// of B's files prove.
		v := newTestVault(t, "", nil)
		v.mkdir("ren", 0o755)
		v.file("ren/old", []byte("old"), 0o644)
		oldDir := v.cipher("ren")
		v.renameDir("ren", "ren2")
		v.must(os.Mkdir(oldDir, 0o755))
		v.fileIn(oldDir, v.ids["ren"], "new", []byte("written on B"))
		r := check(t, v, "")
		if r.ExitCode() != ExitClean {
			t.Fatalf("exit %d, want 0 (a missing dirid the names prove is a sync note):\n%s", r.ExitCode(), problemList(r.Problems))
		}
		wantClass(t, r.Problems, ClassSync, KindMissing, "ren")
		_, dest := extract(t, v, "", "")
		wantTree(t, "extract", tree(t, dest), map[string]string{"ren": "/", "ren/new": "written on B", "ren2": "/", "ren2/old": "old"})
		applyRepairs(t, v, r)
		if r.ExitCode() != ExitRepaired {
			t.Errorf("exit %d after the repair, want 1", r.ExitCode())
		}
		wantClean(t, v, "")
	})
	t.Run("second rename", func(t *testing.T) {
		// "b" was renamed from "a" before: its ID is a's, which only the
		// renamed twin "c" still holds.
		v := newTestVault(t, "", nil)
		v.mkdir("a", 0o755)
		v.file("a/old", []byte("old"), 0o644)
		v.renameDir("a", "b")
		oldDir := v.cipher("b")
		v.renameDir("b", "c")
		v.must(os.Mkdir(oldDir, 0o755))
		long := strings.Repeat("new on B ", 20)
		v.fileIn(oldDir, v.ids["c"], "new", []byte("written on B"))
		v.fileIn(oldDir, v.ids["c"], long, []byte("long, written on B"))
		r := check(t, v, "")
		if r.ExitCode() != ExitProblems {
			t.Fatalf("exit %d, want 4:\n%s", r.ExitCode(), problemList(r.Problems))
		}
		wantClass(t, r.Problems, ClassMisplaced, KindMisplaced, "b")
		if !strings.Contains(problemList(r.Problems), `the ID of "c"`) {
			t.Errorf("the renamed twin is not named:\n%s", problemList(r.Problems))
		}
		if len(r.Problems) != 1 {
			t.Errorf("want one finding, for the directory:\n%s", problemList(r.Problems))
		}
		_, dest := extract(t, v, "", "")
		wantTree(t, "extract", tree(t, dest), map[string]string{"b": "/", "b/new": "written on B",
			"b/" + long: "long, written on B", "c": "/", "c/old": "old"})
		applyRepairs(t, v, r)
		wantClean(t, v, "")
	})
}

// A directory removed on device A (after a rename) while device B wrote
// into it: its ID is nowhere in the vault; this machine's record of IDs
// has it.
func TestRemovedWhileWritingFoundInRecord(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("w", 0o755)
	v.renameDir("w", "x")
	id := v.ids["x"]
	xDir := v.cipher("x")
	v.must(os.Remove(filepath.Join(xDir, crypto.DirIDFile)))
	v.fileIn(xDir, id, "new", []byte("written on B"))
	record := filepath.Join(t.TempDir(), "dirids")
	other := crypto.DirID{7}
	v.must(os.WriteFile(record, append(append(other[:0:0], other[:]...), append(id[:], 1, 2)...), 0o600))

	// Without the record nothing proves the ID: as far as this device can
	// tell, the directory's ID file has not arrived yet.
	r := check(t, v, "")
	wantClass(t, r.Problems, ClassSync, KindMissing, "x")
	if c := classes(r.Problems); c[ClassSync] != 2 || len(r.Problems) != 2 || r.Repairable() != 0 || r.ExitCode() != ExitClean {
		t.Errorf("without the record: want two sync notes (the ID file, the name), nothing repairable:\n%s", problemList(r.Problems))
	}
	if xr, _ := extract(t, v, "", ""); xr.ExitCode() != ExitProblems {
		t.Errorf("extract without the record: exit %d, want 4 (a file not restored):\n%s", xr.ExitCode(), problemList(xr.Problems))
	}
	r = check(t, v, record)
	wantClass(t, r.Problems, ClassMisplaced, KindMisplaced, "x")
	if !strings.Contains(problemList(r.Problems), "this machine's record") {
		t.Errorf("the record is not named:\n%s", problemList(r.Problems))
	}
	_, dest := extract(t, v, record, "")
	wantTree(t, "extract", tree(t, dest), map[string]string{"x": "/", "x/new": "written on B"})
	applyRepairs(t, v, r)
	wantClean(t, v, "") // no record needed any more
}

// Names of another directory's ID in a directory without its ID file whose
// other names prove the ID derived from its name: the ID file is restored
// and they are adopted, their names re-encrypted under it; a taken name
// is kept as "name (conflict other directory)", a long name with its side
// file, a subdirectory with its own ID file (restored first when missing).
func TestAdoptEntriesOfAnotherDirectory(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("d", 0o755)
	v.mkdir("e", 0o755)
	v.file("d/report.pdf", []byte("d's own"), 0o644)
	dDir, eID := v.cipher("d"), v.ids["e"]
	v.must(os.Remove(filepath.Join(dDir, crypto.DirIDFile)))
	long := strings.Repeat("stray long ", 20)
	v.fileIn(dDir, eID, "report.pdf", []byte("e's report"))
	v.fileIn(dDir, eID, "stray.txt", []byte("stray"))
	v.fileIn(dDir, eID, long, []byte("stray long"))
	for _, sub := range []string{"subdir", "subdir2"} {
		c := filepath.Join(dDir, v.storedIn(dDir, eID, sub))
		v.must(os.Mkdir(c, 0o755))
		subID := v.keys.DeriveDirID(eID, sub)
		if sub == "subdir" {
			v.must(os.WriteFile(filepath.Join(c, crypto.DirIDFile), crypto.MarshalDirID(subID), 0o444))
		}
		v.fileIn(c, subID, "deep", []byte("deep in "+sub))
	}

	r := check(t, v, "")
	if r.ExitCode() != ExitProblems || classes(r.Problems)[ClassMisplaced] != 6 || r.Repairable() != 7 {
		t.Fatalf("exit %d, want 6 misplaced findings and 7 repairs (2 ID files, 5 adoptions):\n%s", r.ExitCode(),
			problemList(r.Problems))
	}
	want := map[string]string{"d": "/", "e": "/", "d/report.pdf": "d's own",
		"d/report (conflict other directory).pdf": "e's report", "d/stray.txt": "stray", "d/" + long: "stray long",
		"d/subdir": "/", "d/subdir/deep": "deep in subdir", "d/subdir2": "/", "d/subdir2/deep": "deep in subdir2"}
	_, dest := extract(t, v, "", "")
	wantTree(t, "extract", tree(t, dest), want)
	applyRepairs(t, v, r)
	wantClean(t, v, "")
	_, dest = extract(t, v, "", "")
	wantTree(t, "extract after the repair", tree(t, dest), want)
	// The long name's old side file went with it.
	ents, _ := os.ReadDir(dDir)
	side := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), crypto.LongNameSuffix) {
			side++
		}
	}
	if side != 1 {
		t.Errorf("%d side files in d, want the adopted long name's only", side)
	}
}

// A name of another directory's ID in a directory that has its own ID file
// is what a transplant looks like: the mount does not show it (guarantee 3
// of the threat model), extract does not restore it, fsck reports whose ID
// it has and repairs nothing.
func TestNameOfAnotherDirectoryStaysHidden(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("d", 0o755)
	v.mkdir("e", 0o755)
	v.file("d/own", []byte("own"), 0o644)
	v.fileIn(v.cipher("d"), v.ids["e"], "moved", []byte("moved"))
	r := check(t, v, "")
	if r.ExitCode() != ExitProblems || len(r.Problems) != 1 || r.Repairable() != 0 ||
		!strings.Contains(r.Problems[0].Detail, `"moved", decrypts under the ID of "e"`) {
		t.Fatalf("exit %d:\n%s", r.ExitCode(), problemList(r.Problems))
	}
	xr, dest := extract(t, v, "", "")
	if xr.ExitCode() != ExitProblems {
		t.Errorf("extract: exit %d, want 4", xr.ExitCode())
	}
	wantTree(t, "extract", tree(t, dest), map[string]string{"d": "/", "d/own": "own", "e": "/"})
}

// Leftovers: a header temp file, a side file without its entry, redundant
// copies of a side file and of an ID file go; a side file a conflict copy
// still needs stays.
func TestRepairRemovesLeftovers(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("d", 0o755)
	long := strings.Repeat("long ", 40)
	lc := v.file("d/"+long, []byte("long"), 0o644)
	gone := v.file("d/"+long+"gone", []byte("gone"), 0o644)
	v.must(os.Remove(gone)) // its side file stays: an orphan
	kept := v.file("d/"+long+"kept", []byte("kept"), 0o644)
	b, err := os.ReadFile(kept)
	v.must(err)
	v.must(os.Remove(kept))
	dir, base := filepath.Split(kept)
	keptCopy := filepath.Join(dir, "sealfs.ln.sync-conflict-20261202-130124-CAVCEQA."+strings.TrimPrefix(base, "sealfs.ln."))
	v.must(os.WriteFile(keptCopy, b, 0o644)) // a copy whose original was removed: needs the side file
	side, err := os.ReadFile(lc + crypto.LongNameSuffix)
	v.must(err)
	v.must(os.WriteFile(lc+".sync-conflict-20261202-130124-CAVCEQA.name", side, 0o644))
	dirid, err := os.ReadFile(filepath.Join(v.cipher("d"), crypto.DirIDFile))
	v.must(err)
	v.must(os.WriteFile(filepath.Join(v.cipher("d"), "sealfs.sync-conflict-20261202-130124-CAVCEQA.dirid"), dirid, 0o444))
	v.must(os.WriteFile(filepath.Join(v.dir, "sealfs.vault.tmp-123456"), []byte("half a header"), 0o600))

	r := check(t, v, "")
	if r.ExitCode() != ExitProblems || r.Repairable() != 4 {
		t.Fatalf("exit %d, want 4 with 4 repairs:\n%s", r.ExitCode(), problemList(r.Problems))
	}
	wantClass(t, r.Problems, ClassSync, KindLeftover, "d/"+long+"gone")
	wantClass(t, r.Problems, ClassConflict, KindConflict, "d/"+long+"kept (conflict 2026-12-02 130124 CAVCEQA)")
	applyRepairs(t, v, r)
	if _, err := os.Stat(kept + crypto.LongNameSuffix); err != nil {
		t.Errorf("the side file the copy needs was removed: %v", err)
	}
	r = check(t, v, "")
	if r.ExitCode() != ExitClean || len(r.Problems) != 1 {
		t.Errorf("after the repair, want only the conflict copy's note:\n%s", problemList(r.Problems))
	}
}

// A repair is checked again when applied: a sealfs.dirid that arrived
// after the check is kept, an orphan side file whose entry arrived stays,
// and a directory swapped for a symlink is not entered.
func TestRepairRechecks(t *testing.T) {
	v := newTestVault(t, "", nil)
	v.mkdir("d", 0o755)
	v.mkdir("s", 0o755)
	v.file("d/f", []byte("f"), 0o644)
	v.file("s/f", []byte("f"), 0o644)
	long := strings.Repeat("long ", 40)
	lc := v.file("d/"+long, []byte("long"), 0o644)
	lb, err := os.ReadFile(lc)
	v.must(err)
	v.must(os.Remove(lc))
	idFile := filepath.Join(v.cipher("d"), crypto.DirIDFile)
	real, err := os.ReadFile(idFile)
	v.must(err)
	v.must(os.Remove(idFile))
	v.must(os.Remove(filepath.Join(v.cipher("s"), crypto.DirIDFile)))
	r := check(t, v, "")
	if r.Repairable() != 3 {
		t.Fatalf("want 3 repairs:\n%s", problemList(r.Problems))
	}
	// The sync delivers d's dirid and the long name; s becomes a symlink
	// to a copy of itself elsewhere.
	v.must(os.WriteFile(idFile, real, 0o444))
	v.must(os.WriteFile(lc, lb, 0o644))
	outside := filepath.Join(t.TempDir(), "s-elsewhere")
	v.must(os.Rename(v.cipher("s"), outside))
	v.must(os.Symlink(outside, v.cipher("s")))
	if err := Repair(v.keys, v.dir, r); err != nil {
		t.Fatal(err)
	}
	if r.Repaired() != 0 {
		t.Errorf("%d repairs done on a folder that changed:\n%s", r.Repaired(), problemList(r.Problems))
	}
	for _, p := range r.Problems {
		if p.fix != 0 && p.RepairError == "" {
			t.Errorf("no reason given: %v", p)
		}
	}
	if _, err := os.Lstat(filepath.Join(outside, crypto.DirIDFile)); err == nil {
		t.Error("the repair wrote through the symlink")
	}
	if _, err := os.Stat(lc + crypto.LongNameSuffix); err != nil {
		t.Errorf("the side file of the entry that arrived was removed: %v", err)
	}
}

// The heuristics that tell a placeholder, a crash leftover and damage
// apart (docs/sync.md §6).
func TestFileFindingClasses(t *testing.T) {
	v := newTestVault(t, "", nil)
	two := make([]byte, crypto.BlockSize+5000)
	files := map[string]string{}
	for _, n := range []string{"empty", "header-only", "cut-inside", "cut-boundary", "torn-last", "flipped-first", "flipped-full-last"} {
		content := two
		if n == "flipped-full-last" {
			content = make([]byte, 2*crypto.BlockSize)
		}
		files[n] = v.file(n, content, 0o644)
	}
	v.must(os.Truncate(files["empty"], 0))
	v.must(os.Truncate(files["header-only"], crypto.FileHeaderSize))
	v.must(os.Truncate(files["cut-inside"], crypto.BlockOffset(1)+10))
	v.must(os.Truncate(files["cut-boundary"], crypto.BlockOffset(1)))
	flip := func(name string, off int64) {
		b, err := os.ReadFile(files[name])
		v.must(err)
		if off < 0 {
			off += int64(len(b))
		}
		b[off] ^= 1
		v.must(os.WriteFile(files[name], b, 0o644))
	}
	flip("torn-last", -3)
	flip("flipped-first", 100)
	flip("flipped-full-last", -3)
	r := check(t, v, "")
	want := map[string]Class{"empty": ClassSync, "header-only": ClassCrash, "cut-inside": ClassCrash,
		"cut-boundary": ClassCrash, "torn-last": ClassCrash, "flipped-first": ClassDamage, "flipped-full-last": ClassDamage}
	for name, class := range want {
		n := 0
		for _, p := range r.Problems {
			if p.PlainPath == name {
				n++
				if p.Class != class {
					t.Errorf("%s: class %s, want %s: %v", name, p.Class, class, p)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d findings, want 1:\n%s", name, n, problemList(r.Problems))
		}
	}
	// The placeholder alone is a note for fsck; extract did not restore it.
	v.must(os.Remove(files["header-only"]))
	for _, n := range []string{"cut-inside", "cut-boundary", "torn-last", "flipped-first", "flipped-full-last"} {
		v.must(os.Remove(files[n]))
	}
	if r := check(t, v, ""); r.ExitCode() != ExitClean || len(r.Problems) != 1 {
		t.Errorf("fsck of a vault with a placeholder: exit %d:\n%s", r.ExitCode(), problemList(r.Problems))
	}
	xr, dest := extract(t, v, "", "")
	if xr.ExitCode() != ExitProblems || !xr.Problems[0].NotRestored {
		t.Errorf("extract of a placeholder: exit %d:\n%s", xr.ExitCode(), problemList(xr.Problems))
	}
	if _, err := os.Lstat(filepath.Join(dest, "empty")); err == nil {
		t.Error("extract made a file for the placeholder")
	}
}
