package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
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

var (
	updateVectors  = flag.Bool("update-vectors", false, "regenerate testdata/vault-v1 (format changes only)")
	updateV2Header = flag.Bool("update-v2-header", false, "regenerate testdata/vault-v2.vault from testdata/vault-v1")
)

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
	h.Version = 1
	body, _ := json.MarshalIndent(h, "", " ")
	hb := encodeCopy(1, body, nil) // the vault-v1 vectors keep format 1's header
	hb = append(hb, headerMAC(k, hb)...)
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

// testdata/vault-v2.vault is the known-answer format 2 header of the same
// vault (vault-v1's vault ID, recovery slot and master key): the test reads
// it the way docs/format.md §3 describes, offset by offset, without the
// package's decoder, then checks the decoder agrees.
const v2HeaderVector = "testdata/vault-v2.vault"

func TestVectorsV2Header(t *testing.T) {
	raw, err := os.ReadFile(vectorDir + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var man vectorManifest
	must(t, json.Unmarshal(raw, &man))
	mk, err := hex.DecodeString(man.MasterKey)
	must(t, err)
	m, err := MasterKeyFromBytes(mk)
	must(t, err)
	defer m.Wipe()
	k, err := DeriveKeys(m)
	must(t, err)
	defer k.Wipe()
	if *updateV2Header {
		v1, err := os.ReadFile(filepath.Join(vectorDir, HeaderFileName))
		must(t, err)
		h, err := ParseHeader(v1)
		must(t, err)
		b, err := h.Marshal(k)
		must(t, err)
		must(t, os.WriteFile(v2HeaderVector, b, 0o644))
	}
	b, err := os.ReadFile(v2HeaderVector)
	if err != nil {
		t.Fatalf("format 2 header vector missing (%v): it is committed and must never vanish", err)
	}
	// format.md §3, by hand: two equal copies; each magic, version 2, n,
	// body, HMAC, SHA-256, n.
	if len(b)%2 != 0 || !bytes.Equal(b[:len(b)/2], b[len(b)/2:]) {
		t.Fatal("the two copies differ")
	}
	c := b[:len(b)/2]
	n := int(binary.BigEndian.Uint32(c[10:14]))
	if string(c[:8]) != "sealfsVH" || binary.BigEndian.Uint16(c[8:10]) != 2 || len(c) != 14+n+32+32+4 ||
		int(binary.BigEndian.Uint32(c[len(c)-4:])) != n {
		t.Fatalf("layout: magic %q, version %d, n %d, copy %d bytes", c[:8], binary.BigEndian.Uint16(c[8:10]), n, len(c))
	}
	mac := hmac.New(sha256.New, k.key(offHeaderMAC))
	mac.Write(c[:14+n])
	if !bytes.Equal(mac.Sum(nil), c[14+n:14+n+32]) {
		t.Fatal("MAC")
	}
	sum := sha256.Sum256(c[:14+n+32])
	if !bytes.Equal(sum[:], c[14+n+32:14+n+64]) {
		t.Fatal("checksum")
	}
	// The decoder agrees, and the recovery key opens it.
	h, err := ParseHeader(b)
	must(t, err)
	must(t, VerifyHeader(k, b))
	rk, err := ParseRecoveryKey(man.RecoveryKey)
	must(t, err)
	rs, ok := h.Slot("recovery")
	if !ok {
		t.Fatal("no recovery slot")
	}
	m2, err := OpenRecoverySlot(rs, rk, h.VaultID)
	must(t, err)
	defer m2.Wipe()
	if !bytes.Equal(m2.Bytes(), mk) {
		t.Fatal("the recovery slot opens to another key")
	}
}
