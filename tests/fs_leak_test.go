package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFSNoPlaintextInCipherDir runs a workload that puts marker strings in
// names (short and long), directory names, file contents, symlink targets
// and xattr names and values, then greps every byte of the cipher dir for
// them: entry names, file contents, symlink targets, xattr names and values.
func TestFSNoPlaintextInCipherDir(t *testing.T) {
	m := newMount(t, mountOpts{})
	markers := []string{"NAMEMARK", "DIRMARK", "CONTENTMARK", "LINKMARK", "XNAMEMARK", "XVALMARK"}
	os.MkdirAll(m.p("DIRMARK-top", "DIRMARK-"+strings.Repeat("d", 200)), 0o755)
	mustWrite(t, m.p("DIRMARK-top", "NAMEMARK.txt"), bytes.Repeat([]byte("CONTENTMARK "), 20000))
	mustWrite(t, m.p("DIRMARK-top", "NAMEMARK-"+strings.Repeat("n", 240)), []byte("CONTENTMARK small"))
	mustWrite(t, m.p("NAMEMARK-empty"), nil)
	os.Symlink("LINKMARK/target/NAMEMARK", m.p("DIRMARK-top", "NAMEMARK-link"))
	unix.Setxattr(m.p("NAMEMARK-empty"), "user.XNAMEMARK", []byte("XVALMARK value"), 0)
	unix.Setxattr(m.p("DIRMARK-top"), "user.XNAMEMARK.dir", []byte("XVALMARK"), 0)
	os.Link(m.p("NAMEMARK-empty"), m.p("DIRMARK-top", "NAMEMARK-hardlink"))
	os.Rename(m.p("DIRMARK-top", "NAMEMARK.txt"), m.p("NAMEMARK-renamed"))
	m.unmount()

	check := func(what, where string, b []byte) {
		for _, mk := range markers {
			if bytes.Contains(b, []byte(mk)) {
				t.Errorf("%s of %s contains plaintext marker %s", what, where, mk)
			}
		}
	}
	n := 0
	err := filepath.Walk(m.cipher, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		n++
		check("name", p, []byte(info.Name()))
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			check("symlink target", p, []byte(target))
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			check("content", p, b)
		}
		buf := make([]byte, 64<<10)
		sz, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		check("xattr names", p, buf[:sz])
		for _, name := range strings.Split(string(buf[:sz]), "\x00") {
			if name == "" {
				continue
			}
			v := make([]byte, 64<<10)
			vn, err := unix.Lgetxattr(p, name, v)
			if err != nil {
				return err
			}
			check("xattr value", p, v[:vn])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 8 {
		t.Fatalf("walked only %d cipher entries; workload did not run?", n)
	}
}
