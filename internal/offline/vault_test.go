package offline

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// testVault writes a cipher folder the way the mount lays it out
// (docs/format.md §2): encrypted names, a derived directory ID in every
// directory, long-name side files, encrypted symlink targets and xattrs,
// FIFOs as FIFOs, metadata on the cipher objects. Tests build vaults of any
// shape with it, including hostile ones, without a mount.
type testVault struct {
	t    testing.TB
	keys *crypto.Keys
	dir  string
	ids  map[string]crypto.DirID // plaintext directory → its ID
}

func newTestVault(t testing.TB, dir string, keys *crypto.Keys) *testVault {
	t.Helper()
	if keys == nil {
		m, err := crypto.NewMasterKey()
		if err != nil {
			t.Fatal(err)
		}
		keys, err = crypto.DeriveKeys(m)
		m.Wipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(keys.Wipe)
	}
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "vault")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &testVault{t: t, keys: keys, dir: dir, ids: map[string]crypto.DirID{"": crypto.RootDirID}}
}

// cipher returns the cipher path of plain (which need not exist yet; its
// parent must have been made by this vault), writing the long-name side
// file when the name needs one and has none.
func (v *testVault) cipher(plain string) string {
	v.t.Helper()
	if plain == "" {
		return v.dir
	}
	parent, name := "", plain
	if i := strings.LastIndexByte(plain, '/'); i >= 0 {
		parent, name = plain[:i], plain[i+1:]
	}
	id, ok := v.ids[parent]
	if !ok {
		v.t.Fatalf("testVault: %q has no parent directory in the vault", plain)
	}
	enc, err := v.keys.EncryptName(id, name)
	if err != nil {
		v.t.Fatal(err)
	}
	stored, long := crypto.StoredName(enc)
	cdir := v.cipher(parent)
	if side := filepath.Join(cdir, stored+crypto.LongNameSuffix); long {
		if _, err := os.Lstat(side); os.IsNotExist(err) {
			v.must(os.WriteFile(side, []byte(enc), 0o644))
		}
	}
	return filepath.Join(cdir, stored)
}

func (v *testVault) must(err error) {
	v.t.Helper()
	if err != nil {
		v.t.Fatal(err)
	}
}

func (v *testVault) mkdir(plain string, mode os.FileMode) string {
	v.t.Helper()
	parent, name := "", plain
	if i := strings.LastIndexByte(plain, '/'); i >= 0 {
		parent, name = plain[:i], plain[i+1:]
	}
	c := v.cipher(plain)
	id := v.keys.DeriveDirID(v.ids[parent], name)
	v.must(os.Mkdir(c, 0o700))
	v.must(os.WriteFile(filepath.Join(c, crypto.DirIDFile), crypto.MarshalDirID(id), 0o644))
	v.must(os.Chmod(c, mode))
	v.ids[plain] = id
	return c
}

func (v *testVault) file(plain string, content []byte, mode os.FileMode) string {
	v.t.Helper()
	c := v.cipher(plain)
	var buf bytes.Buffer
	_, err := v.keys.EncryptStream(&buf, bytes.NewReader(content))
	v.must(err)
	v.must(os.WriteFile(c, buf.Bytes(), 0o600))
	v.must(os.Chmod(c, mode))
	return c
}

func (v *testVault) symlink(plain, target string) string {
	v.t.Helper()
	c := v.cipher(plain)
	enc, err := v.keys.EncryptSymlink(target)
	v.must(err)
	v.must(os.Symlink(enc, c))
	return c
}

// importTree copies the plaintext tree src into the vault under plain
// (directories, regular files, symlinks; modes and modification times).
func (v *testVault) importTree(src, plain string) {
	v.t.Helper()
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := plain
		if rel != "." {
			dst = strings.TrimPrefix(plain+"/"+filepath.ToSlash(rel), "/")
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var c string
		switch {
		case d.IsDir():
			if dst == "" {
				return nil
			}
			c = v.mkdir(dst, 0o700)
			dirs = append(dirs, dst)
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			c = v.file(dst, b, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			v.symlink(dst, t)
			return nil
		default:
			return nil
		}
		return os.Chtimes(c, info.ModTime(), info.ModTime())
	})
	v.must(err)
	for i := len(dirs) - 1; i >= 0; i-- {
		info, err := os.Stat(filepath.Join(src, strings.TrimPrefix(strings.TrimPrefix(dirs[i], plain), "/")))
		v.must(err)
		c := v.cipher(dirs[i])
		v.must(os.Chmod(c, info.Mode().Perm()))
		v.must(os.Chtimes(c, info.ModTime(), info.ModTime()))
	}
}
