package crypto

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func testKeys(t testing.TB) *Keys {
	t.Helper()
	m, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Wipe()
	k, err := DeriveKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Wipe)
	return k
}

func encrypt(t testing.TB, k *Keys, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := k.EncryptStream(&buf, bytes.NewReader(plain)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decrypt(k *Keys, c []byte) ([]byte, error) {
	d, err := k.NewDecryptReader(bytes.NewReader(c))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(d)
	return out.Bytes(), err
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
