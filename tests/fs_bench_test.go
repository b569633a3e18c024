package tests

import (
	"fmt"
	"os"
	"testing"
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
