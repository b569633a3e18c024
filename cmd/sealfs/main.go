// Command sealfs creates, unlocks and mounts sealfs vaults. See `sealfs
// --help` and sealfs(1).
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	if err := noDumps(); err != nil {
		fmt.Fprintf(os.Stderr, "sealfs: %v\n", err)
		os.Exit(exitError)
	}
	keepInheritedFDsFromChildren()
	if os.Getenv("PATH") == "" {
		// mount(8) runs its helpers with PATH removed; swtpm, fusermount3
		// and --extpass commands are looked up in it.
		os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	os.Exit(run(os.Args[0], os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// noDumps makes the process non-dumpable before any password or key can
// arrive: the mount daemon (whose key comes down a pipe in runDaemon), a
// foreground mount, and every other command that unlocks. The kernel then
// writes no core dump of it, and other processes of the same user can
// neither ptrace it nor open its /proc/PID/mem, so the key copies on the
// Go heap (docs/threat-model.md, Memory) stay out of their reach; root, with
// CAP_SYS_PTRACE, still can. Children that sealfs executes (--extpass,
// swtpm, fusermount) start dumpable again: execve resets the flag.
func noDumps() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making the process non-dumpable (PR_SET_DUMPABLE): %w", err)
	}
	return nil
}

// keepInheritedFDsFromChildren marks every descriptor above stderr that
// sealfs inherited close-on-exec. Go passes a child only what exec.Cmd
// names, plus whatever the parent left open without FD_CLOEXEC: a managed
// swtpm or a mount daemon, which outlive the command, would otherwise hold
// the caller's pipes open, and a shell waiting for their end would hang
// (issue 16). The daemon's key and ready pipes (fds 3 and 4) are read
// in-process, so the flag does not hurt them.
func keepInheritedFDsFromChildren() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
}

// run is the whole command line: it returns the exit status.
func run(argv0 string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(stdin, stdout, stderr)
	a.intr = catchInterrupts(stderr)
	defer a.intr.stop()
	if req, ok, err := helperMount(argv0, args); ok {
		if err != nil {
			return a.exit(err)
		}
		return a.exit(a.mount(req))
	}
	root := a.newRootCommand()
	args, err := moveLeadingFlags(root, args)
	if err != nil {
		return a.exit(err)
	}
	root.SetArgs(args)
	return a.exit(root.Execute())
}
