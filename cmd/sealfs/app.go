package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/sealfs/sealfs/tpm"
)

// app carries the options and I/O of one invocation. Tests run the binary,
// so this is per-process state, but keeping it in a value rather than in
// package globals keeps each command's inputs explicit.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	tpmSpec         string
	passwordFile    string
	extpass         string
	recoveryKeyFile string
	slot            string
	debug           bool
	quiet           bool
	// newTPM: this command may start a new software TPM for swtpm:DIR
	// (init, recover, enroll); the others refuse a DIR without one.
	newTPM bool

	// envPassword is $SEALFS_PASSWORD, taken out of the environment at start
	// so that neither --extpass commands nor the mount daemon inherit it.
	envPassword []byte

	intr       *interrupts
	log        *slog.Logger
	closers    []func()
	tpmClosers []func()
	tpm        *tpm.TPM // the --tpm connection, once opened
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	a.log = newLogger(stderr, false)
	if p, ok := os.LookupEnv(envPassword); ok {
		a.envPassword = []byte(p)
		os.Unsetenv(envPassword)
		if err := wipeInitialEnv(envPassword); err != nil {
			a.log.Warn("could not wipe $"+envPassword+" from this process's initial environment "+
				"(/proc/PID/environ shows it to root while the process runs)", "err", err)
		}
	}
	return a
}

// closeResources runs deferred clean-ups (TPM connections, key wipes) once,
// before the process exits.
func (a *app) closeResources() {
	a.closeTPMs()
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
	clear(a.envPassword)
}

// notef prints a note for people (a sentence, once) unless -q.
func (a *app) notef(format string, args ...any) {
	if a.quiet {
		return
	}
	fmt.Fprintf(a.stderr, "sealfs: note: "+format+"\n", args...)
}

// openTPM connects to the TPM chosen by --tpm / $SEALFS_TPM, once per
// command: swtpm serves one client at a time, so a second connection would
// wait for the first. It is closed (and a managed swtpm shut down in order)
// when the command ends.
func (a *app) openTPM() (*tpm.TPM, error) {
	if a.tpm != nil {
		return a.tpm, nil
	}
	t, err := a.openTPMSpec(a.tpmSpec, a.newTPM)
	if err != nil {
		return nil, err
	}
	a.tpm = t
	a.tpmClosers = append(a.tpmClosers, func() {
		if err := t.Close(); err != nil {
			a.log.Warn("closing the TPM", "err", err)
		}
	})
	return t, nil
}

// openTPMSpec opens spec; a software TPM that another sealfs command is
// using is waited for, with one line saying so.
func (a *app) openTPMSpec(spec string, newTPM bool) (*tpm.TPM, error) {
	shown := spec
	if shown == "" {
		shown = os.Getenv(tpm.EnvTPM)
	}
	return tpm.OpenWith(spec, a.log, tpm.OpenOptions{
		NewSoftwareTPM: newTPM,
		Quiet:          true, // init and status say it in a sentence (softwareTPMNote)
		Context:        a.intr.context(),
		Wait: func(pid int) {
			who := "another sealfs command"
			if c := commandOf(pid); c != "" {
				who = fmt.Sprintf("another sealfs command (pid %d: %s)", pid, c)
			}
			fmt.Fprintf(a.stderr, "sealfs: waiting for the software TPM %s: %s is using it; it serves one command at a time\n",
				strings.TrimPrefix(shown, "swtpm:"), who)
		},
	})
}

// commandOf returns "sealfs SUBCOMMAND" for a sealfs process, "" if pid is
// not one (or is gone).
func commandOf(pid int) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) == 0 || !strings.Contains(args[0], "sealfs") {
		return ""
	}
	for _, arg := range args[1:] {
		if isCommandName(arg) {
			return "sealfs " + arg
		}
	}
	return "sealfs"
}

// closeTPMs releases TPM connections early: a mount does not need the TPM
// once unlocked, and swtpm serves one client at a time.
func (a *app) closeTPMs() {
	for i := len(a.tpmClosers) - 1; i >= 0; i-- {
		a.tpmClosers[i]()
	}
	a.tpmClosers = nil
	a.tpm = nil
}

func (a *app) tpmSpecShown() string {
	if a.tpmSpec != "" {
		return a.tpmSpec
	}
	if s := os.Getenv(tpm.EnvTPM); s != "" {
		return s
	}
	return "/dev/tpmrm0"
}
