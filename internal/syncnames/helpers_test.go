package syncnames

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// vault is a real key set and a directory ID, so tests use the cipher names
// sealfs writes rather than hand-made look-alikes.
type vault struct {
	keys *crypto.Keys
	dir  crypto.DirID
}

func newVault(t testing.TB) *vault {
	t.Helper()
	m, err := crypto.MasterKeyFromBytes(bytes.Repeat([]byte{7}, crypto.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	k, err := crypto.DeriveKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	v := &vault{keys: k}
	v.dir[0] = 1
	return v
}

// stored returns the directory entry sealfs writes for plain, and the full
// cipher name (which differs for long names).
func (v *vault) stored(t testing.TB, plain string) (entry, enc string) {
	t.Helper()
	enc, err := v.keys.EncryptName(v.dir, plain)
	if err != nil {
		t.Fatal(err)
	}
	entry, _ = crypto.StoredName(enc)
	return entry, enc
}

// resolve does what the mount will do with a name that failed to decrypt:
// try ParseConflict's candidates in order and keep the first that decrypts.
// encOf maps a long-name entry to its side file's content.
func (v *vault) resolve(stored string, encOf map[string]string) (plain string, c Conflict, ok bool) {
	for _, c := range ParseConflict(stored) {
		enc := c.Original
		switch c.Kind {
		case LongName:
			enc = encOf[c.Original]
		case CipherName:
		default:
			continue
		}
		if p, err := v.keys.DecryptName(v.dir, enc); err == nil {
			return p, c, true
		}
	}
	return "", Conflict{}, false
}

// withDash returns a plaintext name whose cipher name of the given length
// contains a '-' at one of the positions in at, for OneDrive's ambiguity.
func (v *vault) withDash(t testing.TB, plainLen int, at func(enc string) bool) (plain, enc string) {
	t.Helper()
	for i := range 100000 {
		p := strings.Repeat("d", plainLen-6) + string(rune('a'+i%26)) + itoa(i)
		p = p[:plainLen]
		e, _ := v.stored(t, p)
		if at(e) {
			return p, e
		}
	}
	t.Fatal("no cipher name with the wanted '-' found")
	return "", ""
}

func itoa(i int) string {
	s := ""
	for {
		s = string(rune('0'+i%10)) + s
		i /= 10
		if i == 0 {
			return strings.Repeat("0", max(0, 5-len(s))) + s
		}
	}
}
