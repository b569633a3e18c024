package offline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// The committed known-answer vault of the crypto package is the fixture:
// the offline reader must agree with its manifest, and every kind of damage
// to a copy of it must be reported with the right kind and path.

type manifest struct {
	MasterKey string `json:"master_key_hex"`
	Entries   map[string]struct {
		Type   string `json:"type"`
		SHA256 string `json:"sha256"`
		Size   int    `json:"size"`
		Target string `json:"target"`
	} `json:"entries"`
}

func fixture(t *testing.T) (*crypto.Keys, string, manifest) {
	t.Helper()
	raw, err := os.ReadFile("../../crypto/testdata/vault-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	mk, _ := hex.DecodeString(m.MasterKey)
	master, err := crypto.MasterKeyFromBytes(mk)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := crypto.DeriveKeys(master)
	master.Wipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Wipe)
	dir := filepath.Join(t.TempDir(), "vault")
	if out, err := exec.Command("cp", "-a", "../../crypto/testdata/vault-v1", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	return keys, dir, m
}

func TestCheckClean(t *testing.T) {
	keys, dir, m := fixture(t)
	r, err := Check(keys, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("clean vault reported problems: %v", r.Problems)
	}
	if r.Files+r.Dirs+r.Symlinks != len(m.Entries) {
		t.Errorf("checked %d files, %d dirs, %d symlinks; manifest has %d entries", r.Files, r.Dirs, r.Symlinks, len(m.Entries))
	}
}

func TestExtractMatchesManifest(t *testing.T) {
	keys, dir, m := fixture(t)
	dest := t.TempDir()
	r, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest})
	if err != nil || !r.OK() {
		t.Fatalf("extract: %v %v", err, r.Problems)
	}
	for p, want := range m.Entries {
		full := filepath.Join(dest, p)
		switch want.Type {
		case "file":
			b, err := os.ReadFile(full)
			sum := sha256.Sum256(b)
			if err != nil || hex.EncodeToString(sum[:]) != want.SHA256 {
				t.Errorf("%s: content differs (%v)", p, err)
			}
		case "symlink":
			if got, _ := os.Readlink(full); got != want.Target {
				t.Errorf("%s: target %q, want %q", p, got, want.Target)
			}
		case "dir":
			if st, err := os.Stat(full); err != nil || !st.IsDir() {
				t.Errorf("%s: not a directory", p)
			}
		}
	}
	// Times and modes come from the cipher objects.
	src, _ := os.Stat(filepath.Join(dir, cipherNameOf(t, keys, dir, "hello.txt")))
	got, _ := os.Stat(filepath.Join(dest, "hello.txt"))
	if !got.ModTime().Equal(src.ModTime()) || got.Mode() != src.Mode() {
		t.Errorf("metadata not restored: %v %v vs %v %v", got.ModTime(), got.Mode(), src.ModTime(), src.Mode())
	}
}

func TestExtractSubPath(t *testing.T) {
	keys, dir, _ := fixture(t)
	dest := t.TempDir()
	r, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest, Path: "docs/sub"})
	if err != nil || !r.OK() {
		t.Fatalf("extract: %v %v", err, r.Problems)
	}
	ents, _ := os.ReadDir(filepath.Join(dest, "docs/sub"))
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), "long-name-") {
		t.Errorf("docs/sub holds %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dest, "hello.txt")); err == nil {
		t.Error("extracting a sub-path extracted the root too")
	}
	for _, p := range []string{"nope", "nope/deeper", "hello.txt/x"} {
		if _, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest, Path: p}); err == nil {
			t.Errorf("missing sub-path %s accepted", p)
		}
	}
}

func cipherNameOf(t *testing.T, keys *crypto.Keys, dir, plain string) string {
	t.Helper()
	root, err := openRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(root)
	l, err := resolve(newWalker(keys, &Report{}, root, ""), root, dir, plain)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close(root)
	rel, _ := filepath.Rel(dir, l.e.CipherPath)
	return rel
}

func problemsOf(t *testing.T, keys *crypto.Keys, dir string) []Problem {
	t.Helper()
	r, err := Check(keys, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Problems
}

func wantProblem(t *testing.T, ps []Problem, kind, plain string) {
	t.Helper()
	for _, p := range ps {
		if p.Kind == kind && (plain == "" || p.PlainPath == plain) {
			return
		}
	}
	t.Errorf("no %s problem for %q in %v", kind, plain, ps)
}

func wantClass(t *testing.T, ps []Problem, class Class, kind, plain string) {
	t.Helper()
	for _, p := range ps {
		if p.Class == class && p.Kind == kind && p.PlainPath == plain {
			return
		}
	}
	t.Errorf("no %s/%s finding for %q in\n%s", class, kind, plain, problemList(ps))
}

func TestCheckFindsDamage(t *testing.T) {
	keys, dir, _ := fixture(t)
	big := filepath.Join(dir, cipherNameOf(t, keys, dir, "three-blocks-and-a-bit.bin"))
	hello := filepath.Join(dir, cipherNameOf(t, keys, dir, "hello.txt"))
	one := filepath.Join(dir, cipherNameOf(t, keys, dir, "one-block.bin"))
	empty := filepath.Join(dir, cipherNameOf(t, keys, dir, "empty"))

	// A flipped byte in block 1 of the big file: tampered, that block only.
	b, _ := os.ReadFile(big)
	b[crypto.BlockOffset(1)+100] ^= 1
	os.WriteFile(big, b, 0o644)
	// hello.txt cut back to its header; the big file's sibling cut at a block boundary.
	os.Truncate(hello, crypto.FileHeaderSize)
	c, _ := os.ReadFile(one)
	os.WriteFile(one, append(c, c[crypto.FileHeaderSize:]...), 0o644) // a block appended
	os.Truncate(empty, 0)
	// A conflict copy and a foreign file.
	os.WriteFile(hello+" (conflicted copy 2026-11-27)", []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "sealfs.ln.orphan.name"), []byte("x"), 0o644)

	ps := problemsOf(t, keys, dir)
	wantProblem(t, ps, KindTampered, "three-blocks-and-a-bit.bin")
	wantProblem(t, ps, KindTruncated, "hello.txt")
	wantProblem(t, ps, KindTruncated, "empty")
	wantProblem(t, ps, KindTampered, "one-block.bin")
	wantProblem(t, ps, KindUnrecognised, "")
	// The copy is a conflict copy of hello.txt, shown (and checked) as
	// "hello (conflict 2026-11-27).txt"; its one byte is a file cut inside
	// its header.
	wantClass(t, ps, ClassConflict, KindConflict, "hello (conflict 2026-11-27).txt")
	wantClass(t, ps, ClassCrash, KindTruncated, "hello (conflict 2026-11-27).txt")
	n := 0
	for _, p := range ps {
		if p.PlainPath == "three-blocks-and-a-bit.bin" {
			n++
			if !strings.Contains(p.Detail, "block 1 ") {
				t.Errorf("wrong block named: %s", p.Detail)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d problems for the big file, want exactly one (block 1)", n)
	}
}

func TestCheckTruncatedAtBlockBoundary(t *testing.T) {
	keys, dir, _ := fixture(t)
	big := filepath.Join(dir, cipherNameOf(t, keys, dir, "three-blocks-and-a-bit.bin"))
	if err := os.Truncate(big, crypto.BlockOffset(2)); err != nil {
		t.Fatal(err)
	}
	ps := problemsOf(t, keys, dir)
	wantProblem(t, ps, KindTruncated, "three-blocks-and-a-bit.bin")
	if len(ps) != 1 || !strings.Contains(ps[0].Detail, "cut after block 1") {
		t.Errorf("want one truncation after block 1, got %v", ps)
	}
}

func TestCheckMissingDirID(t *testing.T) {
	keys, dir, _ := fixture(t)
	docs := filepath.Join(dir, cipherNameOf(t, keys, dir, "docs"))
	if err := os.Remove(filepath.Join(docs, crypto.DirIDFile)); err != nil {
		t.Fatal(err)
	}
	r, _ := Check(keys, dir, nil)
	wantProblem(t, r.Problems, KindMissing, "docs")
	// The derived-ID fallback still finds every name under docs.
	if len(r.Problems) != 1 {
		t.Errorf("want only the missing dirid reported, got %v", r.Problems)
	}
}

func TestCheckTamperedName(t *testing.T) {
	keys, dir, _ := fixture(t)
	hello := filepath.Join(dir, cipherNameOf(t, keys, dir, "hello.txt"))
	bad := filepath.Join(dir, "A"+filepath.Base(hello)[1:])
	if bad == hello {
		bad = filepath.Join(dir, "B"+filepath.Base(hello)[1:])
	}
	os.Rename(hello, bad)
	r, _ := Check(keys, dir, nil)
	if len(r.Problems) != 1 || r.Problems[0].CipherPath != bad {
		t.Fatalf("tampered name: %v", r.Problems)
	}
	// Everything else still listed and checked.
	if r.Files != 6 {
		t.Errorf("checked %d files, want the 6 intact ones", r.Files)
	}
}

// A sealfs.dirid or long-name side file that is a FIFO (or a symlink to a
// device) is damage to report, not something to block on or read forever.
func TestCheckSpecialMetadataFiles(t *testing.T) {
	keys, dir, _ := fixture(t)
	var dirid, side string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		switch {
		case err != nil:
		case info.Name() == crypto.DirIDFile && dirid == "":
			dirid = p
		case strings.HasSuffix(info.Name(), crypto.LongNameSuffix) && side == "":
			side = p
		}
		return nil
	})
	if dirid == "" || side == "" {
		t.Fatal("fixture lacks a dirid or a long-name side file")
	}
	for _, p := range []string{dirid, side} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(dirid, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", side); err != nil {
		t.Fatal(err)
	}
	done := make(chan *Report, 1)
	go func() {
		r, err := Check(keys, dir, nil)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	select {
	case r := <-done:
		var sawDirID, sawSide bool
		for _, p := range r.Problems {
			sawDirID = sawDirID || (p.CipherPath == dirid && strings.Contains(p.Detail, "found a FIFO where a regular file belongs"))
			sawSide = sawSide || strings.Contains(p.Detail, "found a symlink where a regular file belongs") && strings.Contains(p.Detail, "long-name")
		}
		if !sawDirID || !sawSide {
			t.Errorf("problems %v: want the FIFO dirid and the /dev/zero side file reported", r.Problems)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Check still running after 5s")
	}
}

// A symlink already in DEST where the vault has a directory must not take
// the extraction (files, modes) outside DEST: it is refused and reported,
// and the rest is extracted. The same for a sub-path's parent.
func TestExtractRefusesSymlinkInDest(t *testing.T) {
	keys, dir, _ := fixture(t)
	outside := t.TempDir()
	if err := os.Chmod(outside, 0o751); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(outside)
	checkOutside := func(t *testing.T) {
		t.Helper()
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Errorf("extract wrote outside DEST through the symlink: %v", ents)
		}
		if fi, _ := os.Stat(outside); fi.Mode() != before.Mode() || !fi.ModTime().Equal(before.ModTime()) {
			t.Errorf("extract changed the symlink's target: mode %v → %v, mtime %v → %v", before.Mode(), fi.Mode(), before.ModTime(), fi.ModTime())
		}
	}

	t.Run("walk", func(t *testing.T) {
		dest := t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dest, "docs")); err != nil {
			t.Fatal(err)
		}
		r, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest})
		if err != nil {
			t.Fatal(err)
		}
		checkOutside(t)
		wantProblem(t, r.Problems, KindDestination, "docs")
		if _, err := os.Stat(filepath.Join(dest, "hello.txt")); err != nil {
			t.Errorf("the rest of the vault was not extracted: %v", err)
		}
	})
	t.Run("sub-path", func(t *testing.T) {
		dest := t.TempDir()
		if err := os.Symlink(outside, filepath.Join(dest, "docs")); err != nil {
			t.Fatal(err)
		}
		r, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest, Path: "docs/sub"})
		checkOutside(t)
		if err == nil && r.OK() {
			t.Fatal("extracting docs/sub through a symlinked DEST/docs reported nothing")
		}
	})
	t.Run("file", func(t *testing.T) {
		// A symlink where a file or symlink goes is not followed either.
		dest := t.TempDir()
		target := filepath.Join(outside, "target")
		if err := os.Symlink(target, filepath.Join(dest, "hello.txt")); err != nil {
			t.Fatal(err)
		}
		r, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest})
		if err != nil {
			t.Fatal(err)
		}
		checkOutside(t)
		wantProblem(t, r.Problems, KindDestination, "hello.txt")
	})
}
