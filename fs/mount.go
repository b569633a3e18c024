package fs

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
)

// Options configure a mount.
type Options struct {
	// CipherDir is the vault's cipher directory (the cloud-synced folder).
	CipherDir string
	// Keys are the vault's derived keys; the caller wipes them after
	// Unmount.
	Keys *crypto.Keys
	// Log receives warnings (undecryptable names, missing dirid files)
	// and errors (failed authentication). Nil discards.
	Log *slog.Logger
	// ReadOnly mounts read-only.
	ReadOnly bool
	// AllowOther lets other users enter the mount (FUSE allow_other). Off,
	// only the mounting user can, and the backing filesystem checks
	// permissions; with it, the kernel checks the plaintext modes
	// (default_permissions). See access.go.
	AllowOther bool
	// Debug logs every FUSE request (go-fuse's debug output) to Log.
	Debug bool
	// IDRecord is a local file (never in the cipher folder) where the
	// mount keeps the directory IDs it reads, so that entries of a
	// directory removed on another device while this one wrote into it can
	// still be named in later mounts (ids.go). "" keeps none.
	IDRecord string
	// TuneProcs lets the mount run the process with more Ps than CPUs
	// (procs.go), and hands GOMAXPROCS back to Go at Unmount. For a process
	// that serves this one mount and does little else (the daemon); at
	// most one TuneProcs mount per process.
	TuneProcs bool
}

// Server is a mounted vault.
type Server struct {
	srv        *fuse.Server
	r          *root
	mountpoint string
	finish     sync.Once // what follows the unmount, however it came (Wait)
}

// Mount mounts the vault at mountpoint and returns once the kernel serves
// it. go-fuse settings and why (numbers from ../shared/notes/peers.md):
//
//   - Entry, attribute and negative-entry timeouts 1 s. Every change made
//     through the mount goes through the kernel, which keeps its own caches
//     coherent; the timeouts only bound how long a change made underneath
//     by a cloud sync stays invisible. Longer ones did not speed up untar or
//     ls -lR for go-fuse's loopback here, so they would buy staleness only.
//   - default_permissions with AllowOther only: then the kernel checks
//     access against the plaintext modes and owners, so other users get
//     exactly the rights the modes give them (the daemon itself may be
//     root). A single-user mount leaves the checks to the backing
//     filesystem and saves a directory GETATTR per create and unlink
//     (access.go).
//   - No writeback cache: with it the kernel owns mtime and size and sends
//     data later in its own order, which breaks "utimens after write
//     sticks" unless proven otherwise; revisit with issue 6's numbers.
//   - MaxWrite 1 MiB: fewer WRITE round trips for big sequential writes; the
//     engine encrypts 32 blocks per request.
//   - Readahead 4 MiB (setReadahead): the kernel proposes, and caps FUSE at,
//     128 KiB, so a sequential reader gets 128 KiB READs; with a larger
//     window it sends 1 MiB READs, several in flight.
//   - Parallel directory operations (go-fuse default, CAP_PARALLEL_DIROPS):
//     lookups and creates in one directory run concurrently; sealfs state
//     is per node and locked there.
//   - Locks are not forwarded (EnableLocks off): the kernel then handles
//     flock and POSIX locks locally, which is what a single-host backup
//     mount needs.
//   - DirectMount: mount(2) directly when root (no fusermount exec), with
//     fusermount as fallback for unprivileged users.
//   - Xattrs enabled (user.* is offered); READDIRPLUS on so ls -l and rsync
//     get attributes with the listing.
//   - With TuneProcs, twice the Ps Go would use (procs.go): a goroutine
//     back from a system call finds a P at once instead of waiting for
//     sysmon.
func Mount(mountpoint string, o Options) (*Server, error) {
	if o.Keys == nil {
		return nil, errors.New("mount: no keys")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	r, err := newRoot(o)
	if err != nil {
		return nil, fmt.Errorf("mount: cipher dir %s: %w", o.CipherDir, err)
	}
	unlock, err := lockVault(r.rootRef.fd, o.CipherDir) // exclusive.go
	if err != nil {
		r.close()
		return nil, err
	}
	r.unlock = unlock
	sec := attrTimeout
	rootNode := r.newNode()
	mo := fuse.MountOptions{
		AllowOther:  o.AllowOther,
		FsName:      o.CipherDir,
		Name:        "sealfs",
		MaxWrite:    1 << 20,
		DirectMount: true,
		Debug:       o.Debug,
		// Every READ answer is decrypted bytes in memory, never a file
		// descriptor go-fuse could splice from. Left on, go-fuse tried
		// anyway: for a small READ it sized a pipe and wrote the reply
		// header into it before giving up (three or four wasted system
		// calls), and for a 1 MiB READ, too large for a pipe, it logged
		// a line to the daemon's log.
		DisableSplice: true,
	}
	if o.AllowOther {
		mo.Options = append(mo.Options, "default_permissions") // access.go
	}
	if o.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	// go-fuse's server otherwise prints to the daemon's stderr, past slog.
	mo.Logger = log.New(slogWriter{o.Log}, "", 0)
	if o.Debug {
		mo.Logger = slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug)
	}
	var st unix.Stat_t
	if err := unix.Fstat(r.rootRef.fd, &st); err != nil {
		r.close()
		return nil, fmt.Errorf("mount: %w", err)
	}
	mo.ExtraCapabilities |= killCaps
	if o.TuneProcs {
		r.procs = tuneProcs()
	}
	nodeFS := gofs.NewNodeFS(rootNode, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &sec,
		AttrTimeout:     &sec,
		NegativeTimeout: &sec,
		RootStableAttr:  &gofs.StableAttr{Ino: st.Ino},
		// Report mode 0000 as 0000: without this go-fuse shows a file
		// chmod'ed to 0 as 0644, and rsync/tar restores differ.
		NullPermissions: true,
		Logger:          log.New(slogWriter{o.Log}, "", 0),
	})
	// What gofs.Mount does, with the raw layer wrapped (killpriv.go).
	srv, err := fuse.NewServer(&rawFS{RawFileSystem: nodeFS, r: r}, mountpoint, &mo)
	if err == nil {
		go srv.Serve()
		err = srv.WaitMount()
	}
	if err != nil {
		r.procs.stop()
		r.close()
		return nil, fmt.Errorf("mount %s on %s: %w", o.CipherDir, mountpoint, err)
	}
	setReadahead(mountpoint, readaheadKiB, o.Log)
	return &Server{srv: srv, r: r, mountpoint: mountpoint}, nil
}

// readaheadKiB is the mount's readahead window. 1 GiB read after
// drop_caches, this VM: 128 KiB (the FUSE default) 1.6-1.8 s, 1 MiB
// 0.8-1.2 s, 4 MiB 0.63-0.67 s.
const readaheadKiB = 4096

// setReadahead sets the readahead window of the mount's backing device
// info, the only knob for it: FUSE_INIT's max_readahead can only lower the
// kernel's 128 KiB. It needs root (sysfs); otherwise the default stays and
// the failure is logged at debug level.
func setReadahead(mountpoint string, kib int, log *slog.Logger) {
	var st unix.Stat_t
	err := unix.Stat(mountpoint, &st)
	if err == nil {
		p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
		err = os.WriteFile(p, []byte(strconv.Itoa(kib)), 0)
	}
	if err != nil {
		log.Debug("readahead window left at the kernel default", "mountpoint", mountpoint, "err", err)
	}
}

// attrTimeout is the kernel's entry, attribute and negative-entry cache time
// (see Mount).
const attrTimeout = time.Second

// slogWriter forwards go-fuse's diagnostic messages to the injected logger.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.l.Warn("go-fuse: " + string(b))
	return len(b), nil
}

// Wait blocks until the filesystem is unmounted (by Unmount or from
// outside).
func (s *Server) Wait() {
	s.srv.Wait()
	s.finish.Do(func() {
		// No request is in flight any more: nothing starts a prefetch or
		// takes a directory descriptor after this.
		s.r.prefetch.stop()
		s.r.procs.stop()
		if err := s.r.syncIDs(); err != nil {
			s.r.log.Error("making directory ID files durable at unmount", "err", err)
		}
		s.r.ids.flush()
		s.r.close()
	})
}

// LastActivity is when the mount last served a request from a user of the
// plaintext view (for the CLI's --idle).
func (s *Server) LastActivity() time.Time { return time.Unix(0, s.r.lastActivity.Load()) }

// ErrBusy is wrapped by Unmount's error when files are open or a process
// has its working directory inside the mount. It matches syscall.EBUSY with
// errors.Is.
var ErrBusy = fmt.Errorf("mount is busy: %w", syscall.EBUSY)

// releaseGrace is how long Unmount waits for RELEASE requests, which the
// kernel sends asynchronously after the last close(2).
const releaseGrace = time.Second

// Unmount flushes every open file and unmounts. It refuses with ErrBusy
// (and leaves the vault mounted) while files are open or a process has its
// working directory inside.
func (s *Server) Unmount() error {
	var ferr error
	for _, of := range s.r.openFiles() {
		// ErrClosed: a RELEASE closed (and so flushed) it meanwhile.
		if err := of.flush(); err != nil && !errors.Is(err, os.ErrClosed) {
			ferr = errors.Join(ferr, err)
		}
	}
	if err := s.r.syncIDs(); err != nil { // durable.go
		ferr = errors.Join(ferr, err)
	}
	if ferr != nil {
		return fmt.Errorf("unmount %s: flushing open files: %w", s.mountpoint, ferr)
	}
	deadline := time.Now().Add(releaseGrace)
	for len(s.r.openFiles()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(s.r.openFiles()); n > 0 {
		return fmt.Errorf("unmount %s: %d file(s) still open: %w", s.mountpoint, n, ErrBusy)
	}
	if err := s.srv.Unmount(); err != nil {
		// umount(2) says EBUSY; through fusermount (unprivileged) only its
		// message does.
		if errors.Is(err, syscall.EBUSY) || strings.Contains(err.Error(), "busy") {
			return fmt.Errorf("unmount %s (a process may have its working directory inside): %v: %w",
				s.mountpoint, err, ErrBusy)
		}
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	s.Wait()
	return nil
}
