package tests

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Per-operation FUSE overhead (issue 6): each iteration is one user-level
// operation on a real mount; compare with the same benchmark on a plain
// directory (BenchmarkPlain*) run on the same machine.

func benchDir(b *testing.B, plain bool) (string, func(...string) string) {
	if plain {
		d := b.TempDir()
		return d, func(e ...string) string { return joinPath(d, e...) }
	}
	m := newMount(b, mountOpts{})
	return m.mnt, m.p
}

func joinPath(d string, e ...string) string {
	for _, x := range e {
		d += "/" + x
	}
	return d
}

func benchCreateClose(b *testing.B, plain bool) {
	_, p := benchDir(b, plain)
	payload := []byte("small file content\n")
	b.ResetTimer()
	for i := range b.N {
		f, err := os.OpenFile(p(fmt.Sprintf("f%d", i)), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		f.Write(payload)
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchStat(b *testing.B, plain bool) {
	_, p := benchDir(b, plain)
	mustWrite(b, p("f"), []byte("x"))
	b.ResetTimer()
	for range b.N {
		if _, err := os.Lstat(p("f")); err != nil {
			b.Fatal(err)
		}
	}
}

func benchReaddir(b *testing.B, plain bool) {
	_, p := benchDir(b, plain)
	os.Mkdir(p("d"), 0o755)
	for i := range 100 {
		mustWrite(b, p("d", fmt.Sprintf("entry-%03d", i)), nil)
	}
	b.ResetTimer()
	for range b.N {
		ents, err := os.ReadDir(p("d"))
		if err != nil || len(ents) != 100 {
			b.Fatal(len(ents), err)
		}
	}
}

func BenchmarkFSCreateClose(b *testing.B)    { benchCreateClose(b, false) }
func BenchmarkPlainCreateClose(b *testing.B) { benchCreateClose(b, true) }
func BenchmarkFSStat(b *testing.B)           { benchStat(b, false) }
func BenchmarkPlainStat(b *testing.B)        { benchStat(b, true) }
func BenchmarkFSReaddir100(b *testing.B)     { benchReaddir(b, false) }
func BenchmarkPlainReaddir100(b *testing.B)  { benchReaddir(b, true) }

// One FUSE round trip with nothing else in it: fchmod is a SETATTR the
// kernel cannot answer from its caches.
func benchChmod(b *testing.B, plain bool) {
	_, p := benchDir(b, plain)
	mustWrite(b, p("f"), []byte("x"))
	f, err := os.Open(p("f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ResetTimer()
	for i := range b.N {
		if err := f.Chmod(os.FileMode(0o600 | i&1<<2)); err != nil {
			b.Fatal(err)
		}
	}
}

// What tar -x does per regular file as root: create, write, set times,
// owner and mode, close (about nine round trips; see docs/performance.md).
func benchUntarFile(b *testing.B, plain bool) {
	_, p := benchDir(b, plain)
	payload := make([]byte, 7000)
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	b.ResetTimer()
	for i := range b.N {
		name := p(fmt.Sprintf("f%d", i))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Write(payload); err != nil {
			b.Fatal(err)
		}
		if err := unix.Futimes(int(f.Fd()), []unix.Timeval{unix.NsecToTimeval(mt.UnixNano()), unix.NsecToTimeval(mt.UnixNano())}); err != nil {
			b.Fatal(err)
		}
		if err := f.Chown(0, 0); err != nil {
			b.Fatal(err)
		}
		if err := f.Chmod(0o644); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// What tar -c does per file: open, read all, fstat, close. The kernel's
// caches are dropped once, before the loop, not per file.
func benchReadFile(b *testing.B, plain bool) {
	_, p := benchDir(b, plain)
	payload := make([]byte, 7000)
	const files = 500
	for i := range files {
		mustWrite(b, p(fmt.Sprintf("f%d", i)), payload)
	}
	buf := make([]byte, 64<<10)
	b.ResetTimer()
	for i := range b.N {
		f, err := os.Open(p(fmt.Sprintf("f%d", i%files)))
		if err != nil {
			b.Fatal(err)
		}
		if n, _ := f.Read(buf); n != len(payload) {
			b.Fatal(n)
		}
		if _, err := f.Stat(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

func BenchmarkFSChmod(b *testing.B)        { benchChmod(b, false) }
func BenchmarkPlainChmod(b *testing.B)     { benchChmod(b, true) }
func BenchmarkFSUntarFile(b *testing.B)    { benchUntarFile(b, false) }
func BenchmarkPlainUntarFile(b *testing.B) { benchUntarFile(b, true) }
func BenchmarkFSReadFile(b *testing.B)     { benchReadFile(b, false) }
func BenchmarkPlainReadFile(b *testing.B)  { benchReadFile(b, true) }
