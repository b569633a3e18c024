package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// TestFSTamperedBlock: a modified block fails only the reads touching it,
// with EIO and a log line naming the cipher file; the rest stays readable.
func TestFSTamperedBlock(t *testing.T) {
	m := newMount(t, mountOpts{})
	data := bytes.Repeat([]byte("0123456789abcdef"), 4*crypto.BlockSize/16)
	mustWrite(t, m.p("victim"), data)
	m.unmount()
	files := m.cipherFiles()
	if len(files) != 1 {
		t.Fatalf("cipher files %q", files)
	}
	cp := filepath.Join(m.cipher, files[0])
	f, err := os.OpenFile(cp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	off := crypto.BlockOffset(1) + 100
	f.ReadAt(b, off)
	b[0] ^= 0x40
	f.WriteAt(b, off)
	f.Close()
	m.mount()
	g, err := os.Open(m.p("victim"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	buf := make([]byte, crypto.BlockSize)
	for blk, wantErr := range []bool{false, true, false, false} {
		n, err := g.ReadAt(buf, int64(blk)*crypto.BlockSize)
		if wantErr {
			wantErrno(t, err, syscall.EIO, "read tampered block")
			continue
		}
		if err != nil || !bytes.Equal(buf[:n], data[blk*crypto.BlockSize:(blk+1)*crypto.BlockSize]) {
			t.Fatalf("block %d: n=%d err=%v", blk, n, err)
		}
	}
	if logs := m.logs.String(); !strings.Contains(logs, files[0]) {
		t.Fatalf("no log line names the cipher file %s:\n%s", files[0], logs)
	}
}

// TestFSTamperedNames: an entry whose name fails authentication is logged
// and skipped, the rest of the directory lists; a directory whose dirid
// file went missing still lists (derived ID) with a warning.
func TestFSTamperedNames(t *testing.T) {
	m := newMount(t, mountOpts{})
	for _, n := range []string{"one", "two", "three"} {
		mustWrite(t, m.p(n), []byte(n))
	}
	if err := os.Mkdir(m.p("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("dir", "child"), []byte("c"))
	// Which cipher entry is "two"? Remove the others' plaintext view to see.
	m.unmount()
	before := topLevel(m.cipherFiles())
	m.mount()
	if err := os.Rename(m.p("two"), m.p("two-renamed")); err != nil {
		t.Fatal(err)
	}
	m.unmount()
	after := topLevel(m.cipherFiles())
	var victim string
	for _, a := range after {
		if !slices.Contains(before, a) {
			victim = a
		}
	}
	if victim == "" {
		t.Fatalf("could not find renamed entry: %q vs %q", before, after)
	}
	// Flip one base64 character: still a well-formed name, wrong SIV.
	c := []byte(victim)
	if c[5] == 'A' {
		c[5] = 'B'
	} else {
		c[5] = 'A'
	}
	if err := os.Rename(filepath.Join(m.cipher, victim), filepath.Join(m.cipher, string(c))); err != nil {
		t.Fatal(err)
	}
	for _, e := range after {
		if p := filepath.Join(m.cipher, e, crypto.DirIDFile); fileExists(p) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.mount()
	ents, err := os.ReadDir(m.mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"dir", "one", "three"}; !slices.Equal(names, want) {
		t.Fatalf("listing %q, want %q", names, want)
	}
	logs := m.logs.String()
	if !strings.Contains(logs, "name failed authentication") || !strings.Contains(logs, string(c)) {
		t.Fatalf("tampered name not logged with its cipher path:\n%s", logs)
	}
	if got := mustRead(t, m.p("dir", "child")); string(got) != "c" {
		t.Fatalf("dir without dirid file: %q", got)
	}
	if !strings.Contains(m.logs.String(), "directory ID file missing") {
		t.Fatalf("missing dirid not logged:\n%s", m.logs.String())
	}
}

func topLevel(files []string) []string {
	var out []string
	for _, f := range files {
		if !strings.Contains(f, "/") {
			out = append(out, f)
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
