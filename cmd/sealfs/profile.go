package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
)

// envProfile names a directory into which the mount daemon writes CPU, block,
// mutex and allocation profiles (for bench/run; not a user feature). The
// daemon writes its pid to DIR/daemon.pid and profiles in periods: SIGUSR1
// ends the current period, names its files after the first line of
// DIR/label (else a counter) and starts the next one; unmount ends the last.
// Each period's files appear atomically (written, then renamed):
// NAME.cpu.prof (that period only) and NAME.block.prof, NAME.mutex.prof,
// NAME.allocs.prof (cumulative since mount; use pprof -diff_base).
const envProfile = "SEALFS_PPROF"

// profileRate: one blocking event sampled per this many nanoseconds blocked,
// one mutex contention event in this many.
const profileRate = 1000

// startProfiling starts the profiler when $SEALFS_PPROF is set; the returned
// function ends the last period. Failures are logged, never fatal.
func startProfiling(log *slog.Logger) (stop func()) {
	dir := os.Getenv(envProfile)
	if dir == "" {
		return func() {}
	}
	p := &profiler{dir: dir, log: log}
	if err := os.WriteFile(filepath.Join(dir, "daemon.pid"), fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		log.Warn("profiling disabled", "err", err)
		return func() {}
	}
	runtime.SetBlockProfileRate(profileRate)
	runtime.SetMutexProfileFraction(profileRate)
	p.begin()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-sig:
				p.end()
				p.begin()
			case <-done:
				signal.Stop(sig)
				p.end()
				return
			}
		}
	}()
	return func() { close(done); <-finished }
}

type profiler struct {
	dir string
	log *slog.Logger
	n   int
	cpu *os.File
}

func (p *profiler) begin() {
	f, err := os.CreateTemp(p.dir, ".cpu-*")
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		p.log.Warn("cpu profile", "err", err)
		return
	}
	p.cpu = f
}

func (p *profiler) end() {
	p.n++
	name := fmt.Sprint(p.n)
	// A label names one period only: the next one (e.g. the last, ended by
	// unmount) gets a counter unless a new label is written.
	label := filepath.Join(p.dir, "label")
	if b, err := os.ReadFile(label); err == nil {
		if l, _, _ := strings.Cut(string(b), "\n"); strings.TrimSpace(l) != "" {
			name = strings.TrimSpace(l)
		}
		os.Remove(label)
	}
	for _, prof := range []string{"block", "mutex", "allocs"} {
		p.write(name+"."+prof+".prof", func(f *os.File) error { return pprof.Lookup(prof).WriteTo(f, 0) })
	}
	if p.cpu != nil {
		pprof.StopCPUProfile()
		tmp := p.cpu.Name()
		p.cpu.Close()
		p.cpu = nil
		if err := os.Rename(tmp, filepath.Join(p.dir, name+".cpu.prof")); err != nil {
			p.log.Warn("cpu profile", "err", err)
		}
	}
}

func (p *profiler) write(name string, fn func(*os.File) error) {
	f, err := os.CreateTemp(p.dir, ".prof-*")
	if err != nil {
		p.log.Warn("profile", "name", name, "err", err)
		return
	}
	err = fn(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(p.dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		p.log.Warn("profile", "name", name, "err", err)
	}
}
