package offline

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// FuzzDecrypterFile feeds fsck's and extract's block reader any bytes as a
// cipher file. It must not panic, must hand out exactly the plaintext size
// it claims, and must agree with the crypto package's own stream decrypter:
// it finds nothing wrong exactly when that one accepts the file, and then
// returns the same plaintext. Keys are fixed so that found inputs replay.
func FuzzDecrypterFile(f *testing.F) {
	m, err := crypto.MasterKeyFromBytes(bytes.Repeat([]byte{13}, crypto.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	keys, err := crypto.DeriveKeys(m)
	m.Wipe()
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{0, 1, 100, crypto.BlockSize + 3} { // small: the fuzzer minimizes what it finds
		plain := bytes.Repeat([]byte{byte(n)}, n)
		var buf bytes.Buffer
		if _, err := keys.EncryptStream(&buf, bytes.NewReader(plain)); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	fd, err := unix.MemfdCreate("cipher", unix.MFD_CLOEXEC)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { unix.Close(fd) })
	d := newDecrypter(keys)
	f.Fuzz(func(t *testing.T, c []byte) {
		if err := unix.Ftruncate(fd, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Pwrite(fd, c, 0); err != nil {
			t.Fatal(err)
		}
		var out []byte
		size, bad, err := d.file(fd, int64(len(c)), func(p []byte) error {
			out = append(out, p...)
			return nil
		}, nil)
		if int64(len(out)) != size {
			t.Fatalf("claimed %d plaintext bytes, handed out %d", size, len(out))
		}
		ok := err == nil && len(bad) == 0
		ref, rerr := decryptStream(keys, c)
		if ok != (rerr == nil) {
			t.Fatalf("%d cipher bytes: the block reader says ok=%v (%v, %d bad blocks), the stream decrypter %v",
				len(c), ok, err, len(bad), rerr)
		}
		if ok && !bytes.Equal(out, ref) {
			t.Fatal("the block reader and the stream decrypter accept the file with different plaintexts")
		}
	})
}

func decryptStream(keys *crypto.Keys, c []byte) ([]byte, error) {
	r, err := keys.NewDecryptReader(bytes.NewReader(c))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}
