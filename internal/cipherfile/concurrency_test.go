package cipherfile

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// Writers to disjoint byte ranges that share blocks (every range starts and
// ends mid-block) must not lose each other's bytes in read-modify-write.
func TestParallelDisjointWriters(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	defer f.Close()
	const writers, span = 6, 3*bs + 1234
	want := make([]byte, writers*span)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			base := int64(w * span)
			for range 60 {
				off := rng.Int64N(span)
				n := min(rng.Int64N(bs+100)+1, span-off)
				p := make([]byte, n)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				if _, err := f.WriteAt(p, base+off); err != nil {
					t.Error(err)
					return
				}
				copy(want[base+off:], p) // disjoint per writer
			}
		}()
	}
	wg.Wait()
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, f); !bytes.Equal(got, want[:len(got)]) || !bytes.Equal(want[len(got):], make([]byte, len(want)-len(got))) {
		t.Fatal("parallel writers lost data")
	}
	if got, err := e.decryptDisk(); err != nil || !bytes.Equal(got, want[:len(got)]) {
		t.Fatalf("decrypt after parallel writes: %v", err)
	}
}

// A reader racing an appender sees, for every byte it gets, exactly what was
// appended there: never a torn or unauthenticated block, never an error
// other than io.EOF at the end.
func TestReaderVsAppender(t *testing.T) {
	e := newEnv(t)
	f := e.create()
	defer f.Close()
	const total = 8 << 20
	data := pattern(total, 11)
	var done atomic.Bool
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 2))
			p := make([]byte, 3*bs)
			for !done.Load() {
				size := f.Size()
				off := rng.Int64N(size + 1)
				n, err := f.ReadAt(p[:rng.IntN(len(p))+1], off)
				if err != nil && !errors.Is(err, io.EOF) {
					t.Errorf("read at %d during append: %v", off, err)
					return
				}
				if !bytes.Equal(p[:n], data[off:off+int64(n)]) {
					t.Errorf("read at %d during append returned wrong bytes", off)
					return
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for off := 0; off < total; {
		n := min(rng.IntN(200_000)+1, total-off)
		mustWrite(t, f, data[off:off+n], int64(off))
		off += n
		if rng.IntN(8) == 0 {
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
}
