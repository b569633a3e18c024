package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Known-answer vectors: testdata/vault-v1 is a cipher folder generated once by
// this format version (go test -run TestVectors -update-vectors) and
// committed. Every later version must still decrypt it to the manifest in
// testdata/vault-v1.json, using only the rules of docs/format.md: the walk
// below is a small reference decryptor, independent of the FUSE layer.

var updateVectors = flag.Bool("update-vectors", false, "regenerate testdata/vault-v1 (format changes only)")

const vectorDir = "testdata/vault-v1"

type vectorEntry struct {
	Type   string `json:"type"` // file, dir, symlink
	SHA256 string `json:"sha256,omitempty"`
	Size   int    `json:"size,omitempty"`
	Target string `json:"target,omitempty"`
}

type vectorManifest struct {
	RecoveryKey string                 `json:"recovery_key"`
	MasterKey   string                 `json:"master_key_hex"`
	Entries     map[string]vectorEntry `json:"entries"`
}

func vectorContent(name string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ name[i%len(name)]
	}
	return b
}

func TestVectors(t *testing.T) {
	if *updateVectors {
		generateVectors(t)
	}
	raw, err := os.ReadFile(vectorDir + ".json")
	if err != nil {
		t.Fatalf("test vectors missing (%v): they are committed and must never vanish", err)
	}
	var man vectorManifest
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	got := decryptVault(t, vectorDir, man.RecoveryKey)
	if len(got) != len(man.Entries) {
		t.Errorf("decrypted %d entries, manifest has %d", len(got), len(man.Entries))
	}
	for p, want := range man.Entries {
		if got[p] != want {
			t.Errorf("%s: got %+v, want %+v", p, got[p], want)
		}
	}
}

// decryptVault is the reference decryptor: header → recovery slot → master
// key → header MAC → subkeys → walk.
func decryptVault(t *testing.T, dir, recovery string) map[string]vectorEntry {
	t.Helper()
	hb, err := os.ReadFile(filepath.Join(dir, HeaderFileName))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(hb)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := ParseRecoveryKey(recovery)
	if err != nil {
		t.Fatal(err)
	}
	var m *MasterKey
	for i := range h.Slots {
		if h.Slots[i].Type == SlotRecovery {
			if m, err = OpenRecoverySlot(&h.Slots[i], rk, h.VaultID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if m == nil {
		t.Fatal("no recovery slot")
	}
	defer m.Wipe()
	k, err := DeriveKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Wipe()
	if err := VerifyHeader(k, hb); err != nil {
		t.Fatal(err)
	}
	out := map[string]vectorEntry{}
	walkVault(t, k, dir, "", RootDirID, out)
	return out
}

func walkVault(t *testing.T, k *Keys, cdir, pdir string, id DirID, out map[string]vectorEntry) {
	ents, err := os.ReadDir(cdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		stored := e.Name()
		enc := stored
		if IsLongName(stored) {
			side, err := os.ReadFile(filepath.Join(cdir, stored+LongNameSuffix))
			if err != nil {
				t.Fatal(err)
			}
			if enc, err = ParseLongNameFile(stored, side); err != nil {
				t.Fatal(err)
			}
		} else if strings.HasPrefix(stored, "sealfs.") {
			continue
		}
		name, err := k.DecryptName(id, enc)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Join(cdir, stored), err)
		}
		cpath, ppath := filepath.Join(cdir, stored), filepath.Join(pdir, name)
		switch {
		case e.Type()&os.ModeSymlink != 0:
			tgt, _ := os.Readlink(cpath)
			plain, err := k.DecryptSymlink(tgt)
			if err != nil {
				t.Fatal(err)
			}
			out[ppath] = vectorEntry{Type: "symlink", Target: plain}
		case e.IsDir():
			b, err := os.ReadFile(filepath.Join(cpath, DirIDFile))
			if err != nil {
				t.Fatal(err)
			}
			sub, err := ParseDirID(b)
			if err != nil {
				t.Fatal(err)
			}
			out[ppath] = vectorEntry{Type: "dir"}
			walkVault(t, k, cpath, ppath, sub, out)
		default:
			c, err := os.ReadFile(cpath)
			if err != nil {
				t.Fatal(err)
			}
			p, err := decrypt(k, c)
			if err != nil {
				t.Fatalf("%s: %v", cpath, err)
			}
			sum := sha256.Sum256(p)
			out[ppath] = vectorEntry{Type: "file", Size: len(p), SHA256: hex.EncodeToString(sum[:])}
		}
	}
}

func generateVectors(t *testing.T) {
	if err := os.RemoveAll(vectorDir); err != nil {
		t.Fatal(err)
	}
	m, _ := NewMasterKey()
	defer m.Wipe()
	k, _ := DeriveKeys(m)
	defer k.Wipe()
	h, _ := NewHeader(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC))
	rk, _ := NewRecoveryKey()
	s, err := NewRecoverySlot(m, rk, h.VaultID, "recovery")
	if err != nil {
		t.Fatal(err)
	}
	h.Slots = []Slot{*s}
	hb, _ := h.Marshal(k)
	must(t, os.MkdirAll(vectorDir, 0o755))
	must(t, os.WriteFile(filepath.Join(vectorDir, HeaderFileName), hb, 0o644))

	man := vectorManifest{RecoveryKey: rk.String(), MasterKey: hex.EncodeToString(m.Bytes()), Entries: map[string]vectorEntry{}}
	dirs := map[string]struct {
		cdir string
		id   DirID
	}{"": {vectorDir, RootDirID}}
	put := func(p string, write func(cpath string) vectorEntry) {
		parent := dirs[filepath.Dir(strings.TrimPrefix("/"+p, "/"))]
		if filepath.Dir(p) == "." {
			parent = dirs[""]
		}
		enc, err := k.EncryptName(parent.id, filepath.Base(p))
		must(t, err)
		stored, long := StoredName(enc)
		if long {
			must(t, os.WriteFile(filepath.Join(parent.cdir, stored+LongNameSuffix), []byte(enc), 0o644))
		}
		man.Entries[p] = write(filepath.Join(parent.cdir, stored))
	}
	file := func(p string, n int) {
		put(p, func(cpath string) vectorEntry {
			plain := vectorContent(p, n)
			var buf bytes.Buffer
			_, err := k.EncryptStream(&buf, bytes.NewReader(plain))
			must(t, err)
			must(t, os.WriteFile(cpath, buf.Bytes(), 0o644))
			sum := sha256.Sum256(plain)
			return vectorEntry{Type: "file", Size: n, SHA256: hex.EncodeToString(sum[:])}
		})
	}
	dir := func(p string) {
		put(p, func(cpath string) vectorEntry {
			parent := dirs[filepath.Dir(p)]
			if filepath.Dir(p) == "." {
				parent = dirs[""]
			}
			id := k.DeriveDirID(parent.id, filepath.Base(p))
			must(t, os.Mkdir(cpath, 0o755))
			must(t, os.WriteFile(filepath.Join(cpath, DirIDFile), MarshalDirID(id), 0o644))
			dirs[p] = struct {
				cdir string
				id   DirID
			}{cpath, id}
			return vectorEntry{Type: "dir"}
		})
	}
	file("empty", 0)
	file("hello.txt", 13)
	file("one-block.bin", BlockSize)
	file("three-blocks-and-a-bit.bin", 3*BlockSize+5)
	dir("docs")
	file("docs/hello.txt", 13) // same name and content as at the root: must not look alike
	dir("docs/sub")
	file("docs/sub/"+strings.Repeat("long-name-", 20)+"end", 42)
	file("Ünïcödé.txt", 7)
	put("docs/link", func(cpath string) vectorEntry {
		enc, err := k.EncryptSymlink("../hello.txt")
		must(t, err)
		must(t, os.Symlink(enc, cpath))
		return vectorEntry{Type: "symlink", Target: "../hello.txt"}
	})
	out, _ := json.MarshalIndent(man, "", "  ")
	must(t, os.WriteFile(vectorDir+".json", out, 0o644))
	keys := make([]string, 0, len(man.Entries))
	for p := range man.Entries {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	t.Logf("regenerated %d entries: %v", len(keys), keys)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
