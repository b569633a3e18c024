package syncnames

import (
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

func TestShapeOfRealNames(t *testing.T) {
	v := newVault(t)
	lengths := map[int]bool{}
	for n := 1; n <= crypto.MaxNameLen; n++ {
		entry, enc := v.stored(t, strings.Repeat("é", n/2)+strings.Repeat("x", n%2))
		want := CipherName
		if entry != enc {
			want = LongName
			if got := Shape(entry + crypto.LongNameSuffix); got != LongNameSide {
				t.Fatalf("side file of %d-byte name: %v", n, got)
			}
		} else {
			lengths[len(entry)] = true
		}
		if got := Shape(entry); got != want {
			t.Fatalf("%d-byte name %s: Shape = %v, want %v", n, entry, got, want)
		}
	}
	// format.md §5.3: names up to 143 bytes are stored directly, in nine
	// lengths.
	if len(lengths) != 9 || !lengths[43] || !lengths[214] {
		t.Errorf("cipher name lengths seen: %v", lengths)
	}
}

func TestShapeRejectsWhatCryptoRejects(t *testing.T) {
	v := newVault(t)
	entry, _ := v.stored(t, "report.pdf") // 43 characters: 2 spare bits
	last := entry[len(entry)-1]
	// Set a spare bit: still base64url letters, but not canonical.
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	bad := entry[:len(entry)-1] + string(alphabet[strings.IndexByte(alphabet, last)|1])
	if Shape(bad) != NotSealfs {
		t.Errorf("non-canonical %s has a sealfs shape", bad)
	}
	if _, err := v.keys.DecryptName(v.dir, bad); err == nil {
		t.Errorf("crypto accepts %s", bad)
	}
	for _, s := range []string{
		entry[:42], entry + "A", entry[:42] + "=", entry[:42] + ".", "sealfs.ln." + entry[:42],
		"sealfs.ln." + entry + ".nam", "sealfs.lnx" + entry, "sealfs.vaults", "sealfs.dirid2", "sealfs.",
		"", strings.Repeat("A", 44), strings.Repeat("A", 215), strings.Repeat("A", 235),
	} {
		if Shape(s) != NotSealfs {
			t.Errorf("Shape(%q) = %v", s, Shape(s))
		}
	}
	for s, want := range map[string]Kind{
		"sealfs.vault": VaultHeader, "sealfs.vault.tmp-123": VaultHeaderTemp, "sealfs.dirid": DirID,
		strings.Repeat("A", 43): CipherName, strings.Repeat("A", 214): CipherName,
		"sealfs.ln." + strings.Repeat("_", 42) + "w": LongName,
	} {
		if Shape(s) != want {
			t.Errorf("Shape(%q) = %v, want %v", s, Shape(s), want)
		}
	}
}
