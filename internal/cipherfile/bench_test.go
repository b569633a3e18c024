package cipherfile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Benchmarks pair each cipherfile figure with the same I/O on a plain
// os.File in the same directory (run with -benchtime=1024x for 1 GiB at
// 1 MiB per op). "cache" ends at the page cache; "fsync" adds one fsync at
// the end, i.e. real disk throughput. CIPHERFILE_BENCH_DIR=/dev/shm takes the
// disk out and compares CPU cost alone.

func benchDir(b *testing.B) string {
	d := os.Getenv("CIPHERFILE_BENCH_DIR")
	if d == "" {
		return b.TempDir()
	}
	d, err := os.MkdirTemp(d, "cipherfile-bench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var benchChunks = []int{128 << 10, 1 << 20}

type writerAt interface {
	WriteAt(p []byte, off int64) (int, error)
}

func benchWrite(b *testing.B, open func(path string) (writerAt, func(sync bool) error)) {
	for _, chunk := range benchChunks {
		for _, sync := range []bool{false, true} {
			name := fmt.Sprintf("%dKiB/cache", chunk>>10)
			if sync {
				name = fmt.Sprintf("%dKiB/fsync", chunk>>10)
			}
			b.Run(name, func(b *testing.B) {
				w, done := open(filepath.Join(benchDir(b), "f"))
				p := pattern(chunk, 1)
				b.SetBytes(int64(chunk))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := w.WriteAt(p, int64(i)*int64(chunk)); err != nil {
						b.Fatal(err)
					}
				}
				if err := done(sync); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

func BenchmarkWriteSeq(b *testing.B) {
	e := newEnv(b)
	benchWrite(b, func(path string) (writerAt, func(bool) error) {
		e.path = path
		f := e.create()
		return f, func(sync bool) error {
			if sync {
				if err := f.Sync(false); err != nil {
					return err
				}
			}
			return f.Close()
		}
	})
}

func BenchmarkPlainWriteSeq(b *testing.B) {
	benchWrite(b, func(path string) (writerAt, func(bool) error) {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		return f, func(sync bool) error {
			if sync {
				if err := f.Sync(); err != nil {
					return err
				}
			}
			return f.Close()
		}
	})
}

// benchFileSize is the file read over and over: larger than the caches, well
// within the page cache.
const benchFileSize = 256 << 20

type readerAt interface {
	ReadAt(p []byte, off int64) (int, error)
}

func benchRead(b *testing.B, r readerAt) {
	for _, chunk := range benchChunks {
		b.Run(fmt.Sprintf("%dKiB", chunk>>10), func(b *testing.B) {
			p := make([]byte, chunk)
			b.SetBytes(int64(chunk))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := int64(i) * int64(chunk) % benchFileSize
				if n, err := r.ReadAt(p, off); n != chunk {
					b.Fatal(n, err)
				}
			}
		})
	}
}

func BenchmarkReadSeq(b *testing.B) {
	e := newEnv(b)
	e.path = filepath.Join(benchDir(b), "f")
	f := e.create()
	defer f.Close()
	p := pattern(1<<20, 2)
	for off := int64(0); off < benchFileSize; off += int64(len(p)) {
		mustWrite(b, f, p, off)
	}
	if err := f.Flush(); err != nil {
		b.Fatal(err)
	}
	benchRead(b, f)
}

func BenchmarkPlainReadSeq(b *testing.B) {
	path := filepath.Join(benchDir(b), "f")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	p := pattern(1<<20, 2)
	for off := int64(0); off < benchFileSize; off += int64(len(p)) {
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	benchRead(b, f)
}
