package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/sealfs/sealfs/tpm"
)

// app carries the global options and I/O of one invocation. Tests run the
// binary, so this is per-process state, but keeping it in a value rather
// than in package globals keeps each command's inputs explicit.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	tpmSpec         string
	passwordFile    string
	extpass         string
	recoveryKeyFile string
	slot            string
	debug           bool

	// envPassword is $SEALFS_PASSWORD, taken out of the environment at start
	// so that neither --extpass commands nor the mount daemon inherit it.
	envPassword []byte

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

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

var errHelp = errors.New("help shown")

// flagSet returns a FlagSet for one subcommand with the global flags added.
func (a *app) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.StringVar(&a.tpmSpec, "tpm", a.tpmSpec, "TPM to use: /dev/tpmrm0, unix:PATH, tcp:HOST:PORT or swtpm:DIR (default $"+tpm.EnvTPM+" or /dev/tpmrm0)")
	fs.StringVar(&a.passwordFile, "password-file", a.passwordFile, "read the password from `FILE`")
	fs.StringVar(&a.extpass, "extpass", a.extpass, "run `CMD` via sh -c; its stdout is the password")
	fs.StringVar(&a.recoveryKeyFile, "recovery-key-file", a.recoveryKeyFile, "read the recovery key from `FILE`")
	fs.StringVar(&a.slot, "slot", a.slot, "unlock with TPM slot `ID` when this TPM holds several (see `sealfs slots`)")
	fs.BoolVar(&a.debug, "v", a.debug, "debug logging")
	return fs
}

// parse parses args with flags allowed anywhere (the standard flag package
// stops at the first positional argument) and checks the positional count.
func (a *app) parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	a.log = newLogger(a.stderr, a.debug)
	if len(pos) < minPos || (maxPos >= 0 && len(pos) > maxPos) {
		c := findCommand(fs.Name())
		want := ""
		if c != nil {
			want = c.args
		}
		return nil, usagef("%s: want arguments %q, got %q", fs.Name(), want, strings.Join(pos, " "))
	}
	return pos, nil
}

// openTPM connects to the TPM chosen by --tpm / $SEALFS_TPM, once per
// command: swtpm serves one client at a time, so a second connection would
// wait for the first. It is closed (and a managed swtpm shut down in order)
// when the command ends.
func (a *app) openTPM() (*tpm.TPM, error) {
	if a.tpm != nil {
		return a.tpm, nil
	}
	t, err := tpm.Open(a.tpmSpec, a.log)
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

// closeTPMs releases TPM connections early: a mount does not need the TPM
// once unlocked, and swtpm serves one client at a time.
func (a *app) closeTPMs() {
	for i := len(a.tpmClosers) - 1; i >= 0; i-- {
		a.tpmClosers[i]()
	}
	a.tpmClosers = nil
	a.tpm = nil
}
