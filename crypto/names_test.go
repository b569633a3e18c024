package crypto

import (
	"errors"
	"strings"
	"testing"
)

func TestNameRoundTrip(t *testing.T) {
	k := testKeys(t)
	dir := k.DeriveDirID(RootDirID, "docs")
	for _, name := range []string{"a", "hello.txt", strings.Repeat("x", 15), strings.Repeat("y", 16),
		strings.Repeat("z", 255), "Ünïcödé NFC", "U\u0308nicode NFD", ".hidden", "sealfs.vault", "with\nnewline"} {
		enc, err := k.EncryptName(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(enc, "./=+") {
			t.Errorf("%q: encoded %q is not base64url without padding", name, enc)
		}
		got, err := k.DecryptName(dir, enc)
		if err != nil || got != name {
			t.Errorf("%q: got %q, %v", name, got, err)
		}
		again, _ := k.EncryptName(dir, name)
		if again != enc {
			t.Errorf("%q: encryption is not deterministic", name)
		}
		if other, _ := k.EncryptName(RootDirID, name); other == enc {
			t.Errorf("%q: same cipher name in two directories", name)
		}
		if _, err := k.DecryptName(RootDirID, enc); !errors.Is(err, ErrNameAuth) {
			t.Errorf("%q: decrypting under the wrong directory: %v", name, err)
		}
	}
}

func TestNameLengthPadding(t *testing.T) {
	k := testKeys(t)
	a, _ := k.EncryptName(RootDirID, "a")
	b, _ := k.EncryptName(RootDirID, strings.Repeat("b", 15))
	if len(a) != len(b) {
		t.Errorf("names of 1 and 15 bytes encode to %d and %d chars; padding should hide that", len(a), len(b))
	}
}

func TestNameTamper(t *testing.T) {
	k := testKeys(t)
	enc, _ := k.EncryptName(RootDirID, "secret-plan.txt")
	for i := range enc {
		for _, c := range []byte{'A', '_', '0'} {
			if enc[i] == c {
				continue
			}
			bad := enc[:i] + string(c) + enc[i+1:]
			if got, err := k.DecryptName(RootDirID, bad); err == nil {
				// The last base64 character carries 2 unused bits in some
				// lengths; RawURLEncoding rejects non-canonical ones, so any
				// accepted change must decode to different bytes and fail.
				t.Fatalf("tampered name %q decrypted to %q", bad, got)
			}
		}
	}
	for _, bad := range []string{"", "!!", "AAAA", enc + "AA", enc[:len(enc)-4], enc[:3] + "\n" + enc[3:], enc[:3] + "\r" + enc[3:]} {
		if _, err := k.DecryptName(RootDirID, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestInvalidNames(t *testing.T) {
	k := testKeys(t)
	for _, n := range []string{"", ".", "..", "a/b", "nul\x00", strings.Repeat("x", 256)} {
		if _, err := k.EncryptName(RootDirID, n); !errors.Is(err, ErrNameInvalid) {
			t.Errorf("%q: %v, want ErrNameInvalid", n, err)
		}
	}
}

func TestLongNames(t *testing.T) {
	k := testKeys(t)
	short, _ := k.EncryptName(RootDirID, strings.Repeat("s", 140))
	if s, long := StoredName(short); long || s != short {
		t.Errorf("140-byte name should be stored as is (%d chars)", len(short))
	}
	enc, _ := k.EncryptName(RootDirID, strings.Repeat("l", 200))
	stored, long := StoredName(enc)
	if !long || !IsLongName(stored) || len(stored) > MaxEncodedNameLen {
		t.Fatalf("long name: stored %q long=%v", stored, long)
	}
	if IsLongName(stored + LongNameSuffix) {
		t.Error("side file taken for a long-name entry")
	}
	got, err := ParseLongNameFile(stored, []byte(enc))
	if err != nil || got != enc {
		t.Fatalf("ParseLongNameFile: %v", err)
	}
	other, _ := k.EncryptName(RootDirID, strings.Repeat("m", 200))
	if _, err := ParseLongNameFile(stored, []byte(other)); err == nil {
		t.Error("side file of another entry accepted")
	}
}

func TestDirIDs(t *testing.T) {
	k := testKeys(t)
	a := k.DeriveDirID(RootDirID, "photos")
	if a != k.DeriveDirID(RootDirID, "photos") {
		t.Error("directory IDs are not deterministic: two offline devices would disagree")
	}
	if a == k.DeriveDirID(RootDirID, "photos2") || a == k.DeriveDirID(a, "photos") {
		t.Error("distinct paths share an ID")
	}
	got, err := ParseDirID(MarshalDirID(a))
	if err != nil || got != a {
		t.Errorf("dirid file round trip: %v", err)
	}
	if _, err := ParseDirID([]byte{0, 1, 2}); err == nil {
		t.Error("short dirid file accepted")
	}
	other := testKeys(t)
	if a == other.DeriveDirID(RootDirID, "photos") {
		t.Error("directory IDs do not depend on the key")
	}
}

func TestSymlinkAndXattr(t *testing.T) {
	k := testKeys(t)
	enc, err := k.EncryptSymlink("../target/file")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.DecryptSymlink(enc); err != nil || got != "../target/file" {
		t.Fatalf("symlink: %q %v", got, err)
	}
	long := strings.Repeat("d/", MaxSymlinkTarget/2)
	e2, err := k.EncryptSymlink(long)
	if err != nil || len(e2) >= 4096 {
		t.Fatalf("longest symlink target encodes to %d chars (PATH_MAX 4096): %v", len(e2), err)
	}
	if _, err := k.DecryptSymlink(enc[:len(enc)-2] + "AA"); err == nil {
		t.Error("tampered symlink accepted")
	}
	xn, err := k.EncryptXattrName("user.comment")
	if err != nil || !strings.HasPrefix(xn, StoredXattrPrefix) {
		t.Fatalf("xattr name %q: %v", xn, err)
	}
	if got, err := k.DecryptXattrName(xn); err != nil || got != "user.comment" {
		t.Fatalf("xattr name round trip: %q %v", got, err)
	}
	if _, err := k.EncryptXattrName("security.selinux"); err == nil {
		t.Error("non-user xattr accepted")
	}
	v := k.EncryptXattrValue(xn, []byte("value"))
	if got, err := k.DecryptXattrValue(xn, v); err != nil || string(got) != "value" {
		t.Fatalf("xattr value: %q %v", got, err)
	}
	xn2, _ := k.EncryptXattrName("user.other")
	if _, err := k.DecryptXattrValue(xn2, v); err == nil {
		t.Error("xattr value moved to another name was accepted")
	}
}

// An authentic xattr name that EncryptXattrName would never write (a NUL,
// nothing after "user.", longer than XATTR_NAME_MAX) is refused like such a
// file name in DecryptName, never handed to the kernel.
func TestDecryptXattrNameRejectsInvalid(t *testing.T) {
	k := testKeys(t)
	for _, rest := range []string{"", "a\x00b", "\x00", strings.Repeat("x", 256-len(XattrPrefix))} {
		stored := StoredXattrPrefix + b64.EncodeToString(k.sivSeal([]byte(xattrNameAD), []byte(rest)))
		if got, err := k.DecryptXattrName(stored); !errors.Is(err, ErrNameAuth) {
			t.Errorf("sealed remainder %q: got %q, %v; want ErrNameAuth", rest, got, err)
		}
		if _, err := k.EncryptXattrName(XattrPrefix + rest); !errors.Is(err, ErrNameInvalid) {
			t.Errorf("EncryptXattrName(%q): %v, want ErrNameInvalid", XattrPrefix+rest, err)
		}
	}
}
