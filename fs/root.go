package fs

import (
	"bufio"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// root is the state every node shares: where the ciphertext lives, the keys,
// the logger and the options. Nodes hold a pointer to it (the go-fuse
// loopback shape), so there are no package globals and several mounts can
// run in one process (the tests do).
type root struct {
	cipherDir string // for log lines; system calls go through rootRef
	// rootRef holds an O_PATH descriptor of the cipher directory, opened
	// once at mount; every backing call is relative to it (backing.go).
	rootRef *dirRef
	dirs    *dirCache
	// unlock releases the one-mount-per-vault lock (exclusive.go).
	unlock func()
	keys   *crypto.Keys
	log    *slog.Logger
	opts   Options
	dev    uint64 // st_dev of the cipher dir, masked out of inode numbers
	// attrTimeout is how long the kernel may cache attributes we return.
	attrTimeout time.Duration

	// umask is the daemon's process umask: the backing store applies it on
	// top of the mode the kernel already masked with the caller's umask, so
	// creates fix up the mode when the two disagree.
	umask uint32
	// asRoot: the daemon may chown new files to the caller (as loopback's
	// preserveOwner does); a non-root daemon cannot and need not.
	asRoot bool

	lastActivity atomic.Int64 // unix nanoseconds
	procs        *procsTuner  // nil unless Options.TuneProcs

	kills killWrites // see killpriv.go

	ids        idIndex    // directory IDs of the vault (ids.go)
	pendingIDs pendingIDs // ID files not yet made durable (durable.go)
	logged     sync.Map   // messages logged once per mount (logOnce)

	prefetch *prefetcher // prefetch.go

	openMu sync.Mutex
	files  map[fileKey]*openFile // every regular file currently open
}

func newRoot(o Options) (*root, error) {
	// The user named this directory; a symlink on the way to it is theirs
	// to have, so it is followed. Nothing below it ever is.
	fd, err := unix.Open(o.CipherDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	r := &root{
		cipherDir:   o.CipherDir,
		rootRef:     &dirRef{fd: fd},
		dirs:        newDirCache(dirCacheMax),
		keys:        o.Keys,
		log:         o.Log,
		opts:        o,
		dev:         uint64(st.Dev),
		umask:       readUmask(),
		prefetch:    newPrefetcher(fd),
		asRoot:      os.Geteuid() == 0,
		attrTimeout: attrTimeout,
		files:       map[fileKey]*openFile{},
	}
	r.ids.record = o.IDRecord
	r.touch()
	return r, nil
}

// close releases the descriptors (after unmount).
func (r *root) close() {
	r.dirs.closeAll()
	unix.Close(r.rootRef.fd)
	if r.unlock != nil {
		r.unlock()
	}
}

// touch records activity for the CLI's --idle lock.
func (r *root) touch() { r.lastActivity.Store(time.Now().UnixNano()) }

// readUmask reads the umask from /proc (Linux ≥ 4.7) because umask(2) can
// only read it by changing it, which would race with other goroutines.
func readUmask() uint32 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0o022
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return uint32(m)
			}
		}
	}
	return 0o022
}

// openFiles returns a snapshot of the shared files currently open.
func (r *root) openFiles() []*openFile {
	r.openMu.Lock()
	defer r.openMu.Unlock()
	out := make([]*openFile, 0, len(r.files))
	for _, of := range r.files {
		out = append(out, of)
	}
	return out
}
