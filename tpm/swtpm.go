package tpm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// File names inside a swtpm:DIR state directory. The sockets are passed to
// swtpm relative to DIR (its working directory), so a DIR path longer than
// sun_path still works.
const (
	swtpmSock = "sock"
	swtpmCtrl = "ctrl"
	swtpmPid  = "pid"
	swtpmLock = "sealfs.lock"
	// swtpmState is the file swtpm keeps a TPM 2.0's permanent state in
	// from its first start: no such file, no TPM yet.
	swtpmState = "tpm2-00.permall"
)

// swtpm control-channel command (swtpm's tpm_ioctl.h, CMD_SHUTDOWN): stop
// the TPM and exit.
const ctrlShutdown = 3

// swtpmProc is a swtpm child process serving one state directory.
type swtpmProc struct {
	dir    string
	lock   *os.File // flock on DIR/sealfs.lock, held while we own swtpm
	cmd    *exec.Cmd
	done   chan struct{} // closed once cmd.Wait returned
	stderr *tailBuffer
}

func (p *swtpmProc) sockPath() string { return filepath.Join(p.dir, swtpmSock) }
func (p *swtpmProc) ctrlPath() string { return filepath.Join(p.dir, swtpmCtrl) }

// startSwtpm starts swtpm on dir. A swtpm left running on dir by a crashed
// run is shut down in order (TPM2_Shutdown, then ctrl shutdown) and replaced,
// so that this process owns, and can reap, the one it talks to.
func startSwtpm(dir string, log *slog.Logger, o OpenOptions) (*swtpmProc, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, fmt.Errorf("swtpm binary not found: %w", err)
	}
	if dir == "" {
		return nil, errors.New("swtpm: needs a state directory (swtpm:DIR)")
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, swtpmState)); err != nil && !o.NewSoftwareTPM {
		return nil, ErrNoSoftwareTPM
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating swtpm state dir: %w", err)
	}
	// The directory is the only thing protecting the TPM's seeds.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restricting swtpm state dir: %w", err)
	}
	p := &swtpmProc{dir: dir, done: make(chan struct{}), stderr: &tailBuffer{max: 4096}}
	if p.lock, err = lockDir(filepath.Join(dir, swtpmLock), o); err != nil {
		return nil, err
	}
	if err := p.stopLeftover(log); err != nil {
		p.lock.Close()
		return nil, err
	}
	p.cmd = exec.Command(bin, "socket", "--tpm2",
		"--tpmstate", "dir="+dir+",mode=0600",
		"--server", "type=unixio,path="+swtpmSock+",mode=0600",
		"--ctrl", "type=unixio,path="+swtpmCtrl+",mode=0600",
		"--flags", "not-need-init,startup-clear",
		"--pid", "file="+filepath.Join(dir, swtpmPid))
	p.cmd.Dir = dir
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	// Own process group: a Ctrl-C at the password prompt must reach us, not
	// kill swtpm before we could send TPM2_Shutdown. And it must not outlive
	// us: a sealfs killed outright (SIGKILL) takes its swtpm along, which
	// would otherwise keep running under init, holding the state directory.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := startPinned(p.cmd, p.done); err != nil {
		p.lock.Close()
		return nil, fmt.Errorf("starting swtpm: %w", err)
	}
	if err := p.waitReady(5 * time.Second); err != nil {
		return nil, errors.Join(err, p.stop(log))
	}
	log.Debug("started swtpm", "dir", dir, "pid", p.cmd.Process.Pid)
	return p, nil
}

// startPinned starts cmd from a goroutine locked to its OS thread, which
// then waits for the process and closes done. PR_SET_PDEATHSIG fires when
// the thread that forked the child ends, not the process, and Go ends a
// thread whenever a goroutine exits while locked to it: the forking thread
// must live as long as the child does.
func startPinned(cmd *exec.Cmd, done chan struct{}) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the child
		err := cmd.Start()
		started <- err
		if err == nil {
			_ = cmd.Wait()
			close(done)
		}
	}()
	return <-started
}

func (p *swtpmProc) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("swtpm exited at start: %s", bytes.TrimSpace(p.stderr.Bytes()))
		default:
		}
		if c, err := dialUnix(p.sockPath()); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("swtpm did not open %s within %v", p.sockPath(), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop asks swtpm to exit through its control channel, escalating to
// SIGTERM and SIGKILL, and waits until the process is gone. The caller has
// already sent TPM2_Shutdown.
func (p *swtpmProc) stop(log *slog.Logger) error {
	defer p.lock.Close()
	var errs []error
	if err := ctrlCommand(p.ctrlPath(), ctrlShutdown); err != nil {
		errs = append(errs, fmt.Errorf("swtpm ctrl shutdown: %w", err))
	}
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{0, 5 * time.Second}, {syscall.SIGTERM, 2 * time.Second}, {syscall.SIGKILL, 2 * time.Second}} {
		if step.sig != 0 {
			if log != nil {
				log.Warn("swtpm did not exit, sending signal", "signal", step.sig, "pid", p.cmd.Process.Pid)
			}
			_ = p.cmd.Process.Signal(step.sig)
		}
		select {
		case <-p.done:
			removeStale(p.dir)
			return nil // a clean exit makes the ctrl error irrelevant
		case <-time.After(step.wait):
		}
	}
	return errors.Join(append(errs, errors.New("swtpm did not exit"))...)
}

// stopLeftover shuts down a swtpm that an earlier, crashed run left serving
// p.dir. We hold the directory lock, so no live sealfs process uses it.
func (p *swtpmProc) stopLeftover(log *slog.Logger) error {
	pid := leftoverPid(p.dir)
	conn, err := dialUnix(p.sockPath())
	if err == nil {
		// Orderly shutdown first: otherwise the next start raises the DA counter.
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, serr := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(&streamTPM{conn: conn})
		conn.Close()
		log.Warn("found a swtpm left running by an earlier sealfs run; restarting it", "dir", p.dir, "pid", pid, "shutdown_error", serr)
		_ = ctrlCommand(p.ctrlPath(), ctrlShutdown)
	}
	if pid > 0 {
		if err := waitPidGone(pid, 3*time.Second); err != nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			if err := waitPidGone(pid, 2*time.Second); err != nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				if err := waitPidGone(pid, 2*time.Second); err != nil {
					return fmt.Errorf("leftover swtpm (pid %d) on %s does not exit", pid, p.dir)
				}
			}
		}
	}
	removeStale(p.dir)
	return nil
}

// leftoverPid returns the pid recorded in DIR/pid if that process is still a
// swtpm serving DIR, else 0 (a recycled pid must not be signalled).
func leftoverPid(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, swtpmPid))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte("swtpm")) {
		return 0
	}
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if a := string(arg); a == "dir="+dir || strings.HasPrefix(a, "dir="+dir+",") {
			return pid
		}
	}
	return 0
}

func waitPidGone(pid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		// A zombie still answers kill(0); its cmdline is empty.
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || len(b) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("still running")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func removeStale(dir string) {
	for _, name := range []string{swtpmSock, swtpmCtrl, swtpmPid} {
		_ = os.Remove(filepath.Join(dir, name))
	}
}

// ctrlCommand sends a parameterless command on swtpm's control channel:
// a big-endian uint32 command code, answered by a uint32 result.
func ctrlCommand(path string, cmd uint32) error {
	conn, err := dialUnix(path)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := binary.Write(conn, binary.BigEndian, cmd); err != nil {
		return err
	}
	var res uint32
	if err := binary.Read(conn, binary.BigEndian, &res); err != nil {
		return err
	}
	if res != 0 {
		return fmt.Errorf("swtpm ctrl command %d returned %#x", cmd, res)
	}
	return nil
}

// lockDir takes the state directory's lock, waiting for another sealfs
// process that holds it when o.Wait is set, and records our pid in it so
// that the next one can say whom it waits for.
func lockDir(path string, o OpenOptions) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking swtpm state dir: %w", err)
	}
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	for waiting := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking swtpm state dir: %w", err)
		}
		if o.Wait == nil {
			f.Close()
			return nil, ErrSoftwareTPMBusy
		}
		if !waiting {
			o.Wait(lockHolder(f))
			waiting = true
		}
		// flock(2) cannot be interrupted from Go; poll instead.
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the software TPM in %s: %w", filepath.Dir(path), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// lockHolder returns the pid the lock's holder wrote into it, 0 if none.
func lockHolder(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = b.buf[len(b.buf)-b.max:]
	}
	return len(p), nil
}

func (b *tailBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}
