package tests

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A full backing disk: the writer gets ENOSPC, and everything the file
// system accepted stays readable and authentic (no torn block), through the
// mount and after a remount.
func TestFSDiskFull(t *testing.T) {
	m := newMount(t, mountOpts{})
	m.unmount()
	if err := unix.Mount("tmpfs", m.cipher, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a small tmpfs for the cipher dir: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(m.cipher, unix.MNT_DETACH) })
	m.mount()

	keep := bytes.Repeat([]byte("kept "), 20000) // 100 kB written before the disk fills
	mustWrite(t, m.p("keep"), keep)

	f, err := os.Create(m.p("filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{0xAB}, 100000)
	var written int
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		var n int
		n, werr = f.Write(chunk)
		written += n
	}
	cerr := f.Close()
	if !errors.Is(werr, syscall.ENOSPC) && !errors.Is(cerr, syscall.ENOSPC) {
		t.Fatalf("filling a 2 MB disk: write %v, close %v; want ENOSPC", werr, cerr)
	}
	t.Logf("accepted %d bytes before ENOSPC", written)

	check := func(when string) {
		t.Helper()
		if got := mustRead(t, m.p("keep")); !bytes.Equal(got, keep) {
			t.Errorf("%s: the earlier file changed", when)
		}
		g, err := os.Open(m.p("filler"))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		got, err := io.ReadAll(g)
		if err != nil {
			t.Fatalf("%s: reading the file that hit ENOSPC: %v (a torn block?)", when, err)
		}
		if len(got) < written || !bytes.Equal(got[:written], bytes.Repeat([]byte{0xAB}, written)) {
			t.Errorf("%s: %d bytes read back, %d accepted", when, len(got), written)
		}
	}
	check("mounted")
	// Room again: the file system keeps working.
	if err := os.Remove(m.p("filler")); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("after"), []byte("room again"))
	m.remount(mountOpts{})
	if got := mustRead(t, m.p("after")); string(got) != "room again" {
		t.Errorf("after remount: %q", got)
	}
	if got := mustRead(t, m.p("keep")); !bytes.Equal(got, keep) {
		t.Error("after remount: the earlier file changed")
	}
	if s := m.logs.String(); bytes.Contains([]byte(s), []byte("authentication failed")) {
		t.Errorf("authentication failures logged:\n%s", s)
	}
}
