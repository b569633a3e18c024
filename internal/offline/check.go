package offline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// Report is the result of Check.
type Report struct {
	Files       int       `json:"files"`
	Dirs        int       `json:"dirs"`
	Symlinks    int       `json:"symlinks"`
	Other       int       `json:"other"`
	Blocks      int64     `json:"blocks"`
	CipherBytes int64     `json:"cipher_bytes"`
	Problems    []Problem `json:"problems"`
}

// OK reports whether nothing was found wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Check verifies every name, directory ID, file header, block, symlink
// target and xattr below cipherDir. progress, if set, is called with the
// cipher bytes verified so far (for a progress bar sized by TotalBytes).
func Check(keys *crypto.Keys, cipherDir string, progress func(int64)) (*Report, error) {
	r := &Report{Problems: []Problem{}}
	w := &walker{keys: keys, report: func(p Problem) { r.Problems = append(r.Problems, p) }}
	w.visit = func(e Entry) error {
		checkXattrs(keys, e, w.report)
		switch {
		case e.Info.IsDir():
			r.Dirs++
		case e.Info.Mode()&fs.ModeSymlink != 0:
			r.Symlinks++
			t, err := os.Readlink(e.CipherPath)
			if err == nil {
				_, err = keys.DecryptSymlink(t)
			}
			if err != nil {
				w.report(Problem{Kind: classify(err), CipherPath: e.CipherPath, PlainPath: e.PlainPath, Detail: "symlink target: " + err.Error()})
			}
		case e.Info.Mode().IsRegular():
			r.Files++
			checkFile(keys, e, r, w.report, progress)
		default:
			r.Other++
		}
		return nil
	}
	if err := w.walkDir(cipherDir, "", crypto.RootDirID); err != nil {
		return r, err
	}
	return r, nil
}

func checkFile(keys *crypto.Keys, e Entry, r *Report, report func(Problem), progress func(int64)) {
	_, bad, err := decryptFile(keys, e.CipherPath, nil, func(n int64) {
		r.Blocks++
		r.CipherBytes += n
		if progress != nil {
			progress(n)
		}
	})
	for _, b := range bad {
		report(Problem{Kind: classify(b.Err), CipherPath: e.CipherPath, PlainPath: e.PlainPath,
			Detail: fmt.Sprintf("block %d (plaintext bytes %d–%d): %v", b.Index, b.Index*crypto.BlockSize,
				(b.Index+1)*crypto.BlockSize-1, b.Err)})
	}
	if err != nil {
		report(Problem{Kind: classify(err), CipherPath: e.CipherPath, PlainPath: e.PlainPath, Detail: err.Error()})
	}
}

// checkXattrs decrypts every sealfs xattr of the cipher object.
func checkXattrs(keys *crypto.Keys, e Entry, report func(Problem)) {
	names, err := listXattrs(e.CipherPath)
	if err != nil {
		return // no xattr support on the backing store: nothing to check
	}
	for _, n := range names {
		if !strings.HasPrefix(n, crypto.StoredXattrPrefix) {
			continue
		}
		_, err := keys.DecryptXattrName(n)
		if err == nil {
			var v []byte
			if v, err = getXattr(e.CipherPath, n); err == nil {
				_, err = keys.DecryptXattrValue(n, v)
			}
		}
		if err != nil {
			report(Problem{Kind: classify(err), CipherPath: e.CipherPath, PlainPath: e.PlainPath, Detail: "xattr: " + err.Error()})
		}
	}
}

func listXattrs(path string) ([]string, error) {
	sz, err := unix.Llistxattr(path, nil)
	if err != nil || sz == 0 {
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range strings.Split(string(buf[:sz]), "\x00") {
		if n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

func getXattr(path, name string) ([]byte, error) {
	for {
		sz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew in between
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// TotalBytes sums the sizes of the regular files below dir, for sizing a
// progress bar before a Check or Extract.
func TotalBytes(dir string) int64 {
	var total int64
	_ = walkFiles(dir, func(info fs.FileInfo) { total += info.Size() })
	return total
}

func walkFiles(dir string, f func(fs.FileInfo)) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		switch {
		case info.Mode().IsRegular():
			f(info)
		case info.IsDir():
			_ = walkFiles(dir+"/"+e.Name(), f)
		}
	}
	return nil
}
