package cipherfile

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

func testKeys(t testing.TB) *crypto.Keys {
	t.Helper()
	m, err := crypto.MasterKeyFromBytes(bytes.Repeat([]byte{7}, crypto.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.DeriveKeys(m)
	if err != nil {
		t.Fatal(err)
	}
	m.Wipe()
	t.Cleanup(k.Wipe)
	return k
}

// logBuf collects log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (l *logBuf) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
}

type env struct {
	t    testing.TB
	keys *crypto.Keys
	path string
	logs *logBuf
}

func newEnv(t testing.TB) *env {
	return &env{t: t, keys: testKeys(t), path: filepath.Join(t.TempDir(), "c"), logs: &logBuf{}}
}

func (e *env) opts() Options {
	return Options{Keys: e.keys, Path: e.path, Log: slog.New(slog.NewTextHandler(e.logs, nil))}
}

func (e *env) create() *File {
	e.t.Helper()
	fd, err := os.OpenFile(e.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := Create(fd, e.opts())
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

func (e *env) open() *File {
	e.t.Helper()
	fd, err := os.OpenFile(e.path, os.O_RDWR, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := Open(fd, e.opts())
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// decryptDisk decrypts the cipher file with crypto's independent stream
// reader, which checks the final flag of every block.
func (e *env) decryptDisk() ([]byte, error) {
	fd, err := os.Open(e.path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	r, err := e.keys.NewDecryptReader(fd)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func (e *env) cipherSize() int64 {
	st, err := os.Stat(e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	return st.Size()
}

// flipByte xors one byte of the cipher file.
func (e *env) flipByte(off int64) {
	e.t.Helper()
	fd, err := os.OpenFile(e.path, os.O_RDWR, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	defer fd.Close()
	b := []byte{0}
	if _, err := fd.ReadAt(b, off); err != nil {
		e.t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := fd.WriteAt(b, off); err != nil {
		e.t.Fatal(err)
	}
}

func mustWrite(t testing.TB, f *File, p []byte, off int64) {
	t.Helper()
	if n, err := f.WriteAt(p, off); err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", len(p), off, n, err)
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>13)
	}
	return b
}

func readAll(t testing.TB, f *File) []byte {
	t.Helper()
	b := make([]byte, f.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		t.Fatalf("ReadAt whole file: %d, %v", n, err)
	}
	return b[:n]
}
