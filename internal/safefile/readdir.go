package safefile

import (
	"encoding/binary"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dirent is one entry of a directory listing.
type Dirent struct {
	Name string
	Ino  uint64
	// Type is the entry's S_IFMT bits as the file system reported them at
	// listing time (0 where it does not say). A hint only: the entry can be
	// swapped before it is used, so whatever acts on it checks the type
	// again (OpenDir, OpenFile, ReadlinkAt do).
	Type uint32
}

// direntBufs hold getdents64 output: large enough that most directories
// list in one call, pooled so a walk over thousands of directories does not
// allocate one each.
var direntBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadDir lists the directory open for reading at fd (from OpenDirRead),
// from its current offset to the end, without "." and "..". It takes names
// from the kernel's records directly: os.File's ReadDir would register the
// descriptor with the poller, and its DirEntry.Info would lstat a joined
// path instead of the entry beneath fd.
func ReadDir(fd int) ([]Dirent, error) {
	bp := direntBufs.Get().(*[]byte)
	defer direntBufs.Put(bp)
	buf := *bp
	var out []Dirent
	for {
		n, err := unix.Getdents(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return out, &os.PathError{Op: "getdents", Path: ProcPath(fd), Err: err}
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents appends the entries of linux_dirent64 records (ino u64,
// off s64, reclen u16, type u8, NUL-terminated name) to out.
func parseDirents(b []byte, out []Dirent) []Dirent {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:]))
		if reclen < nameOff || reclen > len(b) {
			return out // a malformed record: the kernel never writes one
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[nameOff:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		if string(name) == "." || string(name) == ".." {
			continue
		}
		// DTTOIF: a DT_* value is the S_IFMT bits shifted right by 12.
		out = append(out, Dirent{Name: string(name), Ino: binary.NativeEndian.Uint64(rec), Type: uint32(rec[18]) << 12})
	}
	return out
}
