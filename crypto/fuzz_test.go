package crypto

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for every decoder of bytes that come from the cipher folder
// (which an attacker may write) or from the user. Each asserts no panic and,
// where the format allows, a round-trip property. Seeds are added in code so
// they can never silently vanish.

// fuzzKeys is fixed so that fuzzer-found inputs replay deterministically.
func fuzzKeys(f *testing.F) *Keys {
	m, err := MasterKeyFromBytes(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		f.Fatal(err)
	}
	k, err := DeriveKeys(m)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func FuzzParseFileHeader(f *testing.F) {
	h, _ := NewFileHeader()
	f.Add(h.Marshal())
	f.Add([]byte("slfs"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseFileHeader(b)
		if err == nil && !bytes.Equal(h.Marshal(), b[:FileHeaderSize]) {
			t.Fatal("parse then marshal differs")
		}
	})
}

func FuzzDecryptFile(f *testing.F) {
	k := fuzzKeys(f)
	for _, n := range []int{0, 1, 100, BlockSize + 3} {
		var buf bytes.Buffer
		_, _ = k.EncryptStream(&buf, bytes.NewReader(make([]byte, n)))
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, c []byte) {
		p, err := decrypt(k, c)
		if err == nil {
			// Anything accepted must be something we could have written.
			if int64(len(c)) != CipherSize(int64(len(p))) {
				t.Fatalf("accepted %d cipher bytes as %d plain bytes", len(c), len(p))
			}
		}
		_, _ = PlainSize(int64(len(c)))
	})
}

func FuzzOpenBlock(f *testing.F) {
	k := fuzzKeys(f)
	var h FileHeader
	fc, _ := k.FileCipher(h)
	blk, _ := fc.SealBlock(nil, []byte("hello"), 0, true)
	f.Add(blk, uint64(0), true)
	f.Fuzz(func(t *testing.T, b []byte, idx uint64, final bool) {
		p, err := fc.OpenBlock(nil, b, idx, final)
		if err == nil && !(idx == 0 && final && string(p) == "hello") {
			t.Fatalf("forged block accepted: %q", p)
		}
	})
}

func FuzzDecryptName(f *testing.F) {
	k := fuzzKeys(f)
	enc, _ := k.EncryptName(RootDirID, "report.pdf")
	f.Add(enc)
	f.Add("")
	f.Add(strings.Repeat("A", 300))
	f.Add(enc[:1] + "\r" + enc[1:]) // the decoder skips CR/LF: must not decrypt to the same name
	f.Fuzz(func(t *testing.T, s string) {
		name, err := k.DecryptName(RootDirID, s)
		if err != nil {
			return
		}
		again, err := k.EncryptName(RootDirID, name)
		if err != nil || again != s {
			t.Fatalf("%q decrypted to %q which re-encrypts to %q (%v)", s, name, again, err)
		}
	})
}

func FuzzParseLongNameFile(f *testing.F) {
	k := fuzzKeys(f)
	enc, _ := k.EncryptName(RootDirID, strings.Repeat("n", 200))
	stored, _ := StoredName(enc)
	f.Add(stored, []byte(enc))
	f.Fuzz(func(t *testing.T, entry string, data []byte) {
		got, err := ParseLongNameFile(entry, data)
		if err == nil {
			if s, long := StoredName(got); !long || s != entry {
				t.Fatal("accepted a side file that does not match its entry")
			}
		}
		_ = IsLongName(entry)
	})
}

func FuzzParseDirID(f *testing.F) {
	f.Add(MarshalDirID(DirID{1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseDirID(b)
		if err == nil && !bytes.Equal(MarshalDirID(id), b) {
			t.Fatal("parse then marshal differs")
		}
	})
}

func FuzzDecryptSymlinkAndXattr(f *testing.F) {
	k := fuzzKeys(f)
	s, _ := k.EncryptSymlink("/etc/passwd")
	xn, _ := k.EncryptXattrName("user.x")
	f.Add(s, xn, k.EncryptXattrValue(xn, []byte("v")))
	f.Fuzz(func(t *testing.T, target, xname string, xval []byte) {
		_, _ = k.DecryptSymlink(target)
		if n, err := k.DecryptXattrName(xname); err == nil {
			if again, err := k.EncryptXattrName(n); err != nil || again != xname {
				t.Fatalf("xattr name %q does not round-trip", xname)
			}
		}
		_, _ = k.DecryptXattrValue(xname, xval)
	})
}

func FuzzParseHeader(f *testing.F) {
	k := fuzzKeys(f)
	h, _ := NewHeader(time.Unix(0, 0))
	kdf, _ := NewKDFParams()
	h.Slots = []Slot{{ID: "t", Type: SlotTPM, KDF: kdf, TPM: &TPMBlob{Public: []byte{1}, Private: []byte{1}, SRKName: []byte{1}}}}
	b, _ := h.Marshal(k)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(b[len(b)/2:])
	body, _ := json.Marshal(h)
	f.Add(append(encodeCopy(1, body, nil), make([]byte, 32)...))
	f.Add([]byte("sealfsVH\x00\x01\x00\x00\x00\x02{}"))
	f.Add([]byte("sealfsVH\x00\x02\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hf, err := ParseHeaderFile(b)
		if err != nil {
			return
		}
		if hf.First() == nil {
			t.Fatal("parsed a file without a whole copy")
		}
		for _, c := range hf.Copies {
			if (c.Header == nil) == (c.Err == nil) {
				t.Fatalf("copy with header %v and error %v", c.Header != nil, c.Err)
			}
			if c.Header == nil {
				continue
			}
			// A header that parses must survive re-encoding and parse again.
			out, err := c.Header.Marshal(k)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseHeaderFile(out)
			if err != nil || !again.Clean {
				t.Fatalf("re-encoded header does not parse clean: %v", err)
			}
			_ = c.Verify(k)
			if _, err := MergeHeaders(c.Header, again.First().Header); err != nil {
				t.Fatalf("a header does not merge with itself: %v", err)
			}
		}
	})
}

func FuzzParseRecoveryKey(f *testing.F) {
	r, _ := NewRecoveryKey()
	f.Add(r.String())
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseRecoveryKey(s)
		if err != nil {
			return
		}
		again, err := ParseRecoveryKey(k.String())
		if err != nil || again != k {
			t.Fatal("recovery key does not round-trip")
		}
	})
}
