package tests

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Paths as long as the plaintext allows: 32 nested 127-byte names make a
// relative path of 4095 bytes (PATH_MAX less its NUL), as POSIX conformance
// suites use. Their cipher names are 192 bytes each, a cipher path of over
// 6000 bytes: every backing operation must be fd-relative for this to work
// (issue 13; path-based calls failed with ENAMETOOLONG at depth 21).
func TestFSLongPaths(t *testing.T) {
	m := newMount(t, mountOpts{})
	root, err := unix.Open(m.mnt, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	const depth = 32
	var names []string
	for i := range depth {
		names = append(names, strings.Repeat(string(rune('a'+i%26)), 127))
	}
	rel := func(n int, last string) string {
		p := strings.Join(names[:n], "/")
		if last != "" {
			p += "/" + last
		}
		return p
	}
	for i := 1; i < depth; i++ {
		if err := unix.Mkdirat(root, rel(i, ""), 0o755); err != nil {
			t.Fatalf("mkdir at depth %d (%d bytes): %v", i, len(rel(i, "")), err)
		}
	}
	// The deepest name completes a 4095-byte path.
	file := rel(depth, "")
	if len(file) != 4095 {
		t.Fatalf("path is %d bytes", len(file))
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s at 4095 bytes: %v", what, err)
		}
	}
	fd, err := unix.Openat(root, file, unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL, 0o644)
	must("create", err)
	_, err = unix.Write(fd, []byte("deep"))
	must("write", err)
	unix.Close(fd)
	fd, err = unix.Openat(root, file, unix.O_RDONLY, 0)
	must("open", err)
	buf := make([]byte, 16)
	n, _ := unix.Read(fd, buf)
	unix.Close(fd)
	if string(buf[:n]) != "deep" {
		t.Fatalf("read %q", buf[:n])
	}
	var st unix.Stat_t
	must("stat", unix.Fstatat(root, file, &st, unix.AT_SYMLINK_NOFOLLOW))
	must("chmod", unix.Fchmodat(root, file, 0o600, 0))
	must("chown", unix.Fchownat(root, file, 1000, 1000, 0))
	// truncate(2) and setxattr(2) take paths: through the deepest
	// directory's /proc/self/fd link, so the daemon still serves them by
	// path (SETATTR without a file handle) on the 32nd level.
	deep, err := unix.Openat(root, rel(depth-1, ""), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must("open deepest directory", err)
	defer unix.Close(deep)
	viaDeep := "/proc/self/fd/" + strconv.Itoa(deep) + "/" + names[depth-1]
	must("truncate", unix.Truncate(viaDeep, 3))
	must("setxattr", unix.Setxattr(viaDeep, "user.deep", []byte("v"), 0))
	if n, err := unix.Getxattr(viaDeep, "user.deep", buf); err != nil || string(buf[:n]) != "v" {
		t.Fatalf("getxattr %q %v", buf[:max(n, 0)], err)
	}
	must("utimes", unix.UtimesNanoAt(root, file, []unix.Timespec{{Sec: 1}, {Sec: 2}}, 0))
	must("stat after truncate", unix.Fstatat(root, file, &st, 0))
	if st.Size != 3 || st.Mode&0o777 != 0o600 || st.Uid != 1000 || st.Mtim.Sec != 2 {
		t.Fatalf("attributes at depth 32: size %d mode %o uid %d mtime %d", st.Size, st.Mode&0o777, st.Uid, st.Mtim.Sec)
	}
	// Siblings of the same length in the deepest directory.
	sib := rel(depth-1, strings.Repeat("z", 127))
	must("link", unix.Linkat(root, file, root, sib, 0))
	must("unlink", unix.Unlinkat(root, sib, 0))
	must("rename", unix.Renameat(root, file, root, sib))
	must("symlink", unix.Symlinkat("target", root, file))
	lb := make([]byte, 64)
	ln, err := unix.Readlinkat(root, file, lb)
	must("readlink", err)
	if string(lb[:ln]) != "target" {
		t.Fatalf("readlink %q", lb[:ln])
	}
	must("mkfifo", unix.Mknodat(root, rel(depth-1, strings.Repeat("y", 127)), unix.S_IFIFO|0o644, 0))
	must("unlink symlink", unix.Unlinkat(root, file, 0))
	must("unlink fifo", unix.Unlinkat(root, rel(depth-1, strings.Repeat("y", 127)), 0))
	must("unlink renamed", unix.Unlinkat(root, sib, 0))
	must("mkdir", unix.Mkdirat(root, file, 0o755))
	must("rmdir", unix.Unlinkat(root, file, unix.AT_REMOVEDIR))
	// And the whole tree goes away again.
	for i := depth - 1; i >= 1; i-- {
		must("rmdir", unix.Unlinkat(root, rel(i, ""), unix.AT_REMOVEDIR))
	}
}
