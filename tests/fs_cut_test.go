package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/offline"
)

// cutPoints are cipher sizes to cut a 3-block file to: every size within 40
// bytes of the header's end and of each block boundary, the empty-file size
// and its neighbours, 0, and every 997th size in between. (The engine's unit
// test, internal/cipherfile, cuts at every single size.)
func cutPoints(full int64) []int64 {
	seen := map[int64]bool{}
	var out []int64
	add := func(c int64) {
		if c >= 0 && c < full && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for _, b := range []int64{0, crypto.FileHeaderSize, crypto.CipherSize(0), crypto.BlockOffset(1), crypto.BlockOffset(2), crypto.BlockOffset(3), full} {
		for d := int64(-40); d <= 40; d++ {
			add(b + d)
		}
	}
	for c := int64(0); c < full; c += 997 {
		add(c)
	}
	return out
}

// Every cut point of a 3-block file, through the mount: the file either
// fails to open or its read fails with EIO; none reads back as a complete
// file of any length, and none is listed with size 0. fsck names each one.
func TestFSEveryCutPointFails(t *testing.T) {
	m := newMount(t, mountOpts{})
	data := bytes.Repeat([]byte("0123456789abcdef"), (3*crypto.BlockSize-1000)/16)
	full := crypto.CipherSize(int64(len(data)))
	cuts := cutPoints(full)
	for i := range cuts {
		mustWrite(t, m.p(fmt.Sprintf("f%04d", i)), data)
	}
	inodes := map[uint64]int{}
	for i := range cuts {
		var st syscall.Stat_t
		if err := syscall.Stat(m.p(fmt.Sprintf("f%04d", i)), &st); err != nil {
			t.Fatal(err)
		}
		inodes[st.Ino] = i
	}
	m.unmount()
	for _, rel := range m.cipherFiles() {
		var st syscall.Stat_t
		p := filepath.Join(m.cipher, rel)
		if syscall.Lstat(p, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			continue
		}
		i, ok := inodes[st.Ino]
		if !ok {
			continue
		}
		if err := os.Truncate(p, cuts[i]); err != nil {
			t.Fatal(err)
		}
	}
	m.mount()
	for i, cut := range cuts {
		name := m.p(fmt.Sprintf("f%04d", i))
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatalf("cut %d: stat: %v", cut, err)
		}
		if fi.Size() == 0 {
			t.Errorf("cut %d: listed as an empty file", cut)
		}
		b, err := os.ReadFile(name)
		if err == nil {
			t.Errorf("cut %d: read %d bytes without an error (size %d)", cut, len(b), fi.Size())
			continue
		}
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("cut %d: %v, want EIO", cut, err)
		}
		if !bytes.HasPrefix(data, b) {
			t.Errorf("cut %d: the bytes read before the damage are wrong", cut)
		}
	}
	m.unmount()
	r, err := offline.Check(m.keys, m.cipher, nil)
	if err != nil {
		t.Fatal(err)
	}
	flagged := map[string]bool{}
	for _, p := range r.Problems {
		flagged[p.PlainPath] = true
	}
	var missed []string
	for i, cut := range cuts {
		if name := fmt.Sprintf("f%04d", i); !flagged[name] {
			missed = append(missed, fmt.Sprintf("%s (cut %d)", name, cut))
		}
	}
	if len(missed) > 0 {
		t.Errorf("fsck does not report %d of %d cut files: %s", len(missed), len(cuts), strings.Join(missed, ", "))
	}
}

// A file rewritten with O_TRUNC gets a new file ID: a block of the earlier
// version spliced into the new one fails to authenticate through the mount.
func TestFSVersionSpliceAfterTruncDetected(t *testing.T) {
	m := newMount(t, mountOpts{})
	v1 := bytes.Repeat([]byte("version one ....."), 3*crypto.BlockSize/17)
	v2 := bytes.Repeat([]byte("VERSION TWO ....."), 3*crypto.BlockSize/17)
	mustWrite(t, m.p("f"), v1)
	cp := m.cipherOf("f")
	old, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(m.p("f"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(v2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m.unmount()
	cur, err := os.ReadFile(cp)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(cur[8:24], old[8:24]) {
		t.Fatal("O_TRUNC kept the file ID")
	}
	b1 := crypto.BlockOffset(1)
	copy(cur[b1:b1+crypto.CipherBlockSize], old[b1:b1+crypto.CipherBlockSize])
	if err := os.WriteFile(cp, cur, 0o644); err != nil {
		t.Fatal(err)
	}
	m.mount()
	g, err := os.Open(m.p("f"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	buf := make([]byte, crypto.BlockSize)
	if _, err := g.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, v2[:crypto.BlockSize]) {
		t.Fatalf("block 0: %v", err)
	}
	_, err = g.ReadAt(buf, crypto.BlockSize)
	wantErrno(t, err, syscall.EIO, "read of v1's block spliced into v2")
}
