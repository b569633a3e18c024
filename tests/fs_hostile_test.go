package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealfs/sealfs/crypto"
)

// Metadata files planted in the synced folder by someone who can write it: a
// FIFO as a directory's ID file, a symlink to /dev/zero as a long-name side
// file. The mount must neither hang nor read without bound; the directory
// stays usable through the derived-ID fallback and the bad entry is logged.
func TestFSHostileMetadataFiles(t *testing.T) {
	m := newMount(t, mountOpts{})
	if err := os.Mkdir(m.p("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, m.p("dir", "child"), []byte("c"))
	long := strings.Repeat("L", 200)
	mustWrite(t, m.p(long), []byte("long"))
	m.unmount()

	var dirCipher, sideFile string
	ents, _ := os.ReadDir(m.cipher)
	for _, e := range ents {
		switch {
		case e.IsDir():
			dirCipher = filepath.Join(m.cipher, e.Name())
		case strings.HasSuffix(e.Name(), crypto.LongNameSuffix):
			sideFile = filepath.Join(m.cipher, e.Name())
		}
	}
	if dirCipher == "" || sideFile == "" {
		t.Fatalf("cipher dir lacks the directory or the long-name side file: %v", ents)
	}
	idFile := filepath.Join(dirCipher, crypto.DirIDFile)
	if err := os.Remove(idFile); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(idFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sideFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", sideFile); err != nil {
		t.Fatal(err)
	}
	m.mount()

	done := make(chan []string, 1)
	go func() {
		var names []string
		for _, d := range []string{m.mnt, m.p("dir")} {
			es, err := os.ReadDir(d)
			if err != nil {
				t.Errorf("listing %s: %v", d, err)
			}
			for _, e := range es {
				names = append(names, e.Name())
			}
		}
		done <- names
	}()
	select {
	case names := <-done:
		if strings.Join(names, ",") != "dir,child" {
			t.Errorf("listed %q, want the directory and its child (the long name's side file is bad)", names)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listing hung on a planted FIFO or /dev/zero link")
	}
	if got := mustRead(t, m.p("dir", "child")); string(got) != "c" {
		t.Errorf("child reads %q", got)
	}
	if logs := m.logs.String(); !strings.Contains(logs, "where a regular file belongs") {
		t.Errorf("planted metadata not logged:\n%s", logs)
	}
}
