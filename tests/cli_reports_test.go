package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIFsckExtractReports: fsck and extract exit 0 when all is well, 4
// when they found problems (named by their path in the vault, the cipher
// file below), 8 when they could not run; sizes are human, extract asks
// for a choice before writing into a folder that holds files, --json
// reports, and a PATH missing from the vault is named as it was given.
func TestCLIFsckExtractReports(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "reports-pw")
	e.initVault(pw)
	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	os.MkdirAll(filepath.Join(e.mnt, "docs"), 0o755)
	os.MkdirAll(filepath.Join(e.mnt, "photos"), 0o755)
	mustWrite(t, filepath.Join(e.mnt, "docs", "a.txt"), []byte("alpha"))
	mustWrite(t, filepath.Join(e.mnt, "docs", "big.bin"), big)
	mustWrite(t, filepath.Join(e.mnt, "photos", "p.jpg"), []byte("jpeg"))
	if err := os.Symlink("docs/a.txt", filepath.Join(e.mnt, "link")); err != nil {
		t.Fatal(err)
	}
	e.mustRun("unmount", e.mnt)

	r := e.mustRun("fsck", "-q", "--password-file", pw, e.cipher)
	if !strings.Contains(r.stdout, "checked 3 files (200.") || !strings.Contains(r.stdout, " KiB in ") ||
		!strings.Contains(r.stdout, " blocks), 2 directories, 1 symlink\n") || !strings.Contains(r.stdout, "no problems found") {
		t.Errorf("fsck of a clean vault:\n%s", r.stdout)
	}

	dest := filepath.Join(e.base, "restore")
	r = e.mustRun("extract", "-q", "--password-file", pw, e.cipher, dest)
	if !strings.Contains(r.stdout, "extracted 3 files, 2 directories, 1 symlink (200.") ||
		!strings.Contains(r.stdout, "KiB read from the vault) into "+dest) {
		t.Errorf("extract's summary:\n%s", r.stdout)
	}
	if got := mustRead(t, filepath.Join(dest, "docs", "big.bin")); !bytes.Equal(got, big) {
		t.Fatal("big.bin extracted wrong")
	}

	// A folder with files in it: a choice first, before any password is
	// asked (a wrong one would say so).
	wrong := e.secretFile("wrong", "not-the-reports-pw")
	wantExit(t, e.run("extract", "--password-file", wrong, e.cipher, dest), 8,
		"already exists and is not an empty folder; extract into a new folder, or choose what happens to what is there: "+
			"--skip-existing keeps it and extracts the rest, --overwrite replaces it")
	mustWrite(t, filepath.Join(dest, "docs", "a.txt"), []byte("edited after the restore"))
	os.Remove(filepath.Join(dest, "photos", "p.jpg"))
	r = e.mustRun("extract", "-q", "--skip-existing", "--password-file", pw, e.cipher, dest)
	if got := string(mustRead(t, filepath.Join(dest, "docs", "a.txt"))); got != "edited after the restore" {
		t.Errorf("--skip-existing replaced a file: %q", got)
	}
	if got := string(mustRead(t, filepath.Join(dest, "photos", "p.jpg"))); got != "jpeg" {
		t.Errorf("--skip-existing did not extract the missing file: %q", got)
	}
	if !strings.Contains(r.stdout, "no problems found") || !strings.Contains(r.stdout, "  kept what was there: docs/a.txt\n") {
		t.Errorf("--skip-existing's report:\n%s", r.stdout)
	}
	// --overwrite replaces the entry in DEST itself: a symlink there is
	// removed, never written through.
	canary := filepath.Join(e.base, "canary")
	mustWrite(t, canary, []byte("outside DEST"))
	os.Remove(filepath.Join(dest, "photos", "p.jpg"))
	if err := os.Symlink(canary, filepath.Join(dest, "photos", "p.jpg")); err != nil {
		t.Fatal(err)
	}
	r = e.mustRun("extract", "-q", "--overwrite", "--json", "--password-file", pw, e.cipher, dest)
	if got := string(mustRead(t, filepath.Join(dest, "docs", "a.txt"))); got != "alpha" {
		t.Errorf("--overwrite kept the edited file: %q", got)
	}
	if got := string(mustRead(t, canary)); got != "outside DEST" {
		t.Errorf("--overwrite wrote through a symlink in DEST: %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(dest, "photos", "p.jpg")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("--overwrite left the symlink in place: %v", err)
	}
	var rep struct {
		Dest     string            `json:"dest"`
		Files    int               `json:"files"`
		Problems []json.RawMessage `json:"problems"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Dest != dest || rep.Files != 3 || len(rep.Problems) != 0 {
		t.Errorf("extract --json: %v %+v\n%s", err, rep, r.stdout)
	}

	r = e.run("extract", "--password-file", pw, e.cipher, filepath.Join(e.base, "r2"), "docs/nothere.txt")
	wantExit(t, r, 8, "extract: docs/nothere.txt is not in the vault")
	if strings.Contains(r.stderr, e.cipher) {
		t.Errorf("the missing PATH is reported by a cipher path: %s", r.stderr)
	}
	e.mustRun("extract", "-q", "--password-file", pw, e.cipher, filepath.Join(e.base, "r3"), "docs")
	if got := string(mustRead(t, filepath.Join(e.base, "r3", "docs", "a.txt"))); got != "alpha" {
		t.Errorf("extract of PATH docs: %q", got)
	}

	// Damage: one changed byte in big.bin's cipher file.
	victim := largestFile(t, e.cipher)
	f, err := os.OpenFile(victim, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), 100000)
	f.Close()
	r = e.run("fsck", "-q", "--password-file", pw, e.cipher)
	wantExit(t, r, 4, "sealfs: fsck: 1 problem found")
	if !strings.Contains(r.stdout, "damage or tampering (1):\n  tampered: docs/big.bin: ") || !strings.Contains(r.stdout, "(stored as "+victim+")") {
		t.Errorf("fsck does not name the damaged file by its path in the vault:\n%s", r.stdout)
	}
	r = e.run("extract", "-q", "--password-file", pw, e.cipher, filepath.Join(e.base, "r4"))
	wantExit(t, r, 4, "sealfs: extract: 1 problem found")
	if got := string(mustRead(t, filepath.Join(e.base, "r4", "docs", "a.txt"))); got != "alpha" {
		t.Errorf("the intact files of a damaged vault: %q", got)
	}
	wantExit(t, e.run("fsck", "-q", "--password-file", wrong, e.cipher), 8, "wrong password")
}
