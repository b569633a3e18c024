package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/sealfs/sealfs/internal/vault"
)

// mountedFS is what the daemon needs from a live mount (fs.Server).
type mountedFS interface {
	Unmount() error
	Wait()
	LastActivity() time.Time
}

type mountOptions struct {
	readOnly, allowOther, debug bool
	idle                        time.Duration
}

// daemon serves one mount until it is unmounted (by `sealfs unmount`, a
// signal, the idle timer or an external fusermount -u), then wipes the keys.
type daemon struct {
	log        *slog.Logger
	v          *vault.Vault
	mountpoint string
	opts       mountOptions
	srv        mountedFS

	mu        sync.Mutex
	unmounted bool
	wiped     chan struct{}
}

// serveMount mounts the unlocked vault v at mountpoint and blocks until it is
// unmounted. ready is called once: with nil when the mount is usable, or
// with the error that prevented it.
func serveMount(log *slog.Logger, v *vault.Vault, mountpoint string, opts mountOptions, ready func(error)) error {
	defer v.Wipe()
	// Catch the signals before mounting: go-fuse's setup makes a request to
	// the new mount from this thread, and a process that dies by a signal's
	// default action while a request of its own is in flight can never finish
	// dying (the kernel waits for the answer its own dead server owed) and
	// leaves a dead mount. A signal that arrives during setup is handled once
	// the mount is up: it unmounts.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// A daemon whose terminal went away must keep serving.
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	files, err := filesFor(mountpoint)
	if err != nil {
		ready(err)
		return err
	}
	l, err := listenControl(files.sock)
	if err != nil {
		err = fmt.Errorf("%s: %w", mountpoint, err)
		ready(err)
		return err
	}
	defer l.Close()
	srv, err := mountFS(mountpoint, v, log, opts)
	if err != nil {
		err = fmt.Errorf("mounting %s: %w", mountpoint, err)
		ready(err)
		return err
	}
	defer startProfiling(log)() // $SEALFS_PPROF only (bench/run)
	d := &daemon{log: log, v: v, mountpoint: mountpoint, opts: opts, srv: srv, wiped: make(chan struct{})}
	stop := make(chan struct{})
	go d.handleSignals(sigs, stop)
	if opts.idle > 0 {
		go d.idleLoop(stop)
	}
	var handlers sync.WaitGroup
	go serveControl(l, log, &handlers, d.handleControl)
	log.Info("mounted", "cipher_dir", v.Dir, "mountpoint", mountpoint, "read_only", opts.readOnly, "idle", opts.idle)
	ready(nil)

	srv.Wait()
	sdNotify("STOPPING=1")
	// Stop accepting first: once `sealfs unmount` hears "ok", a new mount
	// must not find this daemon still answering on the socket.
	l.Close()
	close(stop)
	v.Wipe()
	close(d.wiped)
	log.Info("unmounted; keys wiped", "mountpoint", mountpoint)
	// Let `sealfs unmount` read its "ok" before the process goes away.
	done := make(chan struct{})
	go func() { handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	return nil
}

// lock unmounts; the Wait in serveMount then wipes the keys.
func (d *daemon) lock(reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unmounted {
		return nil
	}
	d.log.Info("unmounting", "reason", reason)
	if err := d.srv.Unmount(); err != nil {
		d.log.Info("unmount refused", "err", err)
		if isBusy(err) {
			return busyError(d.mountpoint)
		}
		return err
	}
	d.unmounted = true
	return nil
}

func (d *daemon) handleSignals(sigs <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case s := <-sigs:
			if err := d.lock(s.String()); err != nil {
				// Refusing beats a lazy unmount that would keep the keys
				// alive behind a mountpoint that looks locked.
				d.log.Error("cannot unmount on signal; still mounted", "signal", s.String(), "err", err)
			}
		}
	}
}

func (d *daemon) idleLoop(stop <-chan struct{}) {
	tick := time.NewTicker(min(max(d.opts.idle/4, 100*time.Millisecond), 10*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if time.Since(d.srv.LastActivity()) < d.opts.idle {
				continue
			}
			if err := d.lock("idle for " + d.opts.idle.String()); err != nil {
				d.log.Warn("idle, but cannot lock yet", "err", err)
			}
		}
	}
}

func (d *daemon) handleControl(cmd string) string {
	switch cmd {
	case ctlPing:
		return "ok"
	case ctlUnmount:
		if err := d.lock("unmount requested"); err != nil {
			if isBusy(err) {
				return "busy " + err.Error()
			}
			return "error " + err.Error()
		}
		select {
		case <-d.wiped:
			return "ok"
		case <-time.After(30 * time.Second):
			return "error unmounted, but the daemon did not finish within 30s"
		}
	default:
		return "error unknown command " + cmd
	}
}
