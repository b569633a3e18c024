package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Signals while a command runs (issue 16). SIGINT, SIGTERM and SIGHUP do not
// kill sealfs where it stands: the main goroutine stops at the next point
// where stopping is safe and unwinds through its ordinary error paths, so
// that a prompt gives the terminal its echo back, init takes back a vault
// whose recovery key was never confirmed (header, NV index, pins), and the
// managed swtpm gets TPM2_Shutdown and stops (app.exit). The status is
// 128+signal.
//
// Waiting points wake up at once: prompts poll the terminal together with a
// pipe that becomes readable on the first signal, the wait for a busy
// software TPM and --extpass watch a context. Short steps (a KDF, a TPM
// command, a header write) finish first. fsck and extract mark their long
// walk abandonable: nothing they hold needs undoing, so the signal ends the
// process there and then. A second signal ends it at once, whatever it is
// doing (the terminal is still restored).
type interrupts struct {
	sigs   chan os.Signal
	stderr io.Writer
	got    atomic.Int32 // the first signal, 0 if none
	ctx    context.Context
	cancel context.CancelFunc
	wakeR  *os.File // readable once a signal arrived
	wakeW  *os.File
	done   chan struct{}
	once   sync.Once

	abandon atomic.Bool // a walk that may simply be dropped is running

	termMu  sync.Mutex
	termFd  int // terminal whose settings to restore on a forced exit, -1 if none
	termOld *unix.Termios
}

// errInterrupted is what every interruption unwraps to.
var errInterrupted = errors.New("interrupted")

// interruptedError names the signal.
type interruptedError struct{ sig syscall.Signal }

func (e interruptedError) Error() string { return "interrupted by " + signalName(e.sig) }
func (e interruptedError) Unwrap() error { return errInterrupted }

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

// catchInterrupts starts watching for SIGINT, SIGTERM and SIGHUP.
func catchInterrupts(stderr io.Writer) *interrupts {
	it := &interrupts{sigs: make(chan os.Signal, 4), stderr: stderr, done: make(chan struct{}), termFd: -1}
	it.ctx, it.cancel = context.WithCancel(context.Background())
	if r, w, err := os.Pipe(); err == nil {
		it.wakeR, it.wakeW = r, w
	}
	signal.Notify(it.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go it.watch()
	return it
}

func (it *interrupts) watch() {
	for {
		var s os.Signal
		select {
		case s = <-it.sigs:
		case <-it.done:
			return
		}
		sig, _ := s.(syscall.Signal)
		if it.got.CompareAndSwap(0, int32(sig)) {
			it.cancel()
			if it.wakeW != nil {
				_, _ = it.wakeW.Write([]byte{1})
			}
			if !it.abandon.Load() {
				continue
			}
		}
		// A walk that may be dropped, or a second signal: end now.
		it.restoreTerminal()
		first := syscall.Signal(it.got.Load())
		fmt.Fprintf(it.stderr, "\nsealfs: %s\n", interruptedError{first}.Error())
		os.Exit(exitSignalBase + int(first))
	}
}

// stop hands the signals back (a mount's own handler takes them over).
func (it *interrupts) stop() {
	if it == nil {
		return
	}
	it.once.Do(func() {
		signal.Stop(it.sigs)
		close(it.done)
	})
}

// received returns the first signal that arrived, 0 if none.
func (it *interrupts) received() syscall.Signal {
	if it == nil {
		return 0
	}
	return syscall.Signal(it.got.Load())
}

// err returns the interruption as an error, nil if none arrived.
func (it *interrupts) err() error {
	if s := it.received(); s != 0 {
		return interruptedError{s}
	}
	return nil
}

// context is cancelled by the first signal.
func (it *interrupts) context() context.Context {
	if it == nil {
		return context.Background()
	}
	return it.ctx
}

// abandonable runs f, during which a signal ends the process at once.
func (it *interrupts) abandonable(f func()) {
	if it == nil {
		f()
		return
	}
	it.abandon.Store(true)
	defer it.abandon.Store(false)
	if it.received() != 0 {
		return
	}
	f()
}

// setTerminal records the settings to put back on fd if a second signal
// ends the process while a prompt has changed them; fd < 0 clears it.
func (it *interrupts) setTerminal(fd int, old *unix.Termios) {
	if it == nil {
		return
	}
	it.termMu.Lock()
	it.termFd, it.termOld = fd, old
	it.termMu.Unlock()
}

func (it *interrupts) restoreTerminal() {
	it.termMu.Lock()
	defer it.termMu.Unlock()
	if it.termFd >= 0 && it.termOld != nil {
		_ = unix.IoctlSetTermios(it.termFd, unix.TCSETS, it.termOld)
	}
}

// errHangup: the terminal hung up, and no signal said so in time.
var errHangup = errors.New("the terminal hung up")

// waitReadable blocks until fd has input, or a signal arrives
// (errInterrupted). A terminal that hangs up wakes the poll before the
// kernel sends its session leader SIGHUP: that signal is waited for a
// moment, so a hang-up ends the command as SIGHUP does.
func (it *interrupts) waitReadable(fd int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if it != nil && it.wakeR != nil {
		fds = append(fds, unix.PollFd{Fd: int32(it.wakeR.Fd()), Events: unix.POLLIN})
	}
	for {
		if err := it.err(); err != nil {
			return err
		}
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if len(fds) > 1 && fds[1].Revents != 0 {
			continue // the loop's check returns the interruption
		}
		switch r := fds[0].Revents; {
		case r&unix.POLLIN != 0:
			return nil
		case r&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0:
			if err := it.await(time.Second); err != nil {
				return err
			}
			return errHangup
		}
	}
}

// await waits up to d for a signal and returns it as an error, nil if
// none came.
func (it *interrupts) await(d time.Duration) error {
	if it == nil || it.wakeR == nil {
		return nil
	}
	fds := []unix.PollFd{{Fd: int32(it.wakeR.Fd()), Events: unix.POLLIN}}
	deadline := time.Now().Add(d)
	for it.err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return it.err()
}
