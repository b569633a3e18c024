package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// TestFSConcurrency (run it with -race: the daemon runs in the test
// process): parallel writers on different files; several handles writing
// disjoint ranges of one file; a reader racing an appender never sees a
// wrong byte or an error (no torn or unauthenticated block).
func TestFSConcurrency(t *testing.T) {
	m := newMount(t, mountOpts{})
	pattern := func(seed, i int) byte { return byte((seed*7 + i*13 + i/1000) % 251) }
	fill := func(seed, off, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = pattern(seed, off+i)
		}
		return b
	}
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := m.p(fmt.Sprintf("par%d", w))
			data := fill(w, 0, 300_000+w*1000)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				errc <- err
				return
			}
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				errc <- fmt.Errorf("writer %d read back %d bytes, %v", w, len(got), err)
			}
		}()
	}
	// One file, four handles, disjoint 50 kB stripes written in 7 kB pieces.
	shared := m.p("shared")
	mustWrite(t, shared, nil)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(shared, os.O_RDWR, 0)
			if err != nil {
				errc <- err
				return
			}
			defer f.Close()
			for off := w * 50_000; off < (w+1)*50_000; off += 7000 {
				n := min(7000, (w+1)*50_000-off)
				if _, err := f.WriteAt(fill(99, off, n), int64(off)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	// An appender and a reader.
	appendP := m.p("appended")
	mustWrite(t, appendP, nil)
	done := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(done)
		f, err := os.OpenFile(appendP, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		for off := 0; off < 600_000; off += 3000 {
			if _, err := f.Write(fill(5, off, 3000)); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		reads := 0
		for {
			select {
			case <-done:
				if reads == 0 {
					errc <- errors.New("reader never ran")
				}
				return
			default:
			}
			f, err := os.Open(appendP)
			if err != nil {
				errc <- err
				return
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				errc <- fmt.Errorf("read racing append: %w", err)
				return
			}
			if want := fill(5, 0, len(b)); !bytes.Equal(b, want) {
				errc <- fmt.Errorf("read racing append: %d bytes differ from what was appended", len(b))
				return
			}
			reads++
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if got := mustRead(t, shared); !bytes.Equal(got, fill(99, 0, 200_000)) {
		t.Errorf("shared file: %d bytes, content differs", len(got))
	}
	if got := mustRead(t, appendP); !bytes.Equal(got, fill(5, 0, 600_000)) {
		t.Errorf("appended file: %d bytes, content differs", len(got))
	}
}
