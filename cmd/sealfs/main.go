// Command sealfs creates, unlocks and mounts sealfs vaults. See `sealfs help`.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/tpm"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// command is one subcommand. run gets the arguments after its name.
type command struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string
	run     func(a *app, args []string) error
	hidden  bool
}

var commands []*command

func init() {
	commands = []*command{
		{name: "init", args: "CIPHERDIR", summary: "create a vault: TPM slot behind a password, plus a recovery key", run: cmdInit},
		{name: "mount", args: "CIPHERDIR MOUNTPOINT", summary: "unlock and mount (in the background unless -f)", run: cmdMount},
		{name: "unmount", args: "MOUNTPOINT", summary: "flush, unmount and wipe the key (alias: lock)", run: cmdUnmount},
		{name: "lock", args: "MOUNTPOINT", summary: "same as unmount", run: cmdUnmount, hidden: true},
		{name: "status", args: "CIPHERDIR", summary: "slots and this TPM's dictionary-attack state (--json)", run: cmdStatus},
		{name: "slots", args: "CIPHERDIR", summary: "list the vault's keyslots", run: cmdSlots},
		{name: "passwd", args: "CIPHERDIR", summary: "change this TPM slot's password (--max-tries N: set its attempt limit)", run: cmdPasswd},
		{name: "recover", args: "CIPHERDIR", summary: "with the recovery key: new TPM slot for this machine, new password", run: cmdRecover},
		{name: "enroll", args: "CIPHERDIR", summary: "add a TPM slot for this machine (authorised by recovery key or password)", run: cmdEnroll},
		{name: "revoke", args: "CIPHERDIR SLOT", summary: "remove a keyslot", run: cmdRevoke},
		{name: "fsck", args: "CIPHERDIR", summary: "verify every header, block and name; report damage (--json)", run: cmdFsck},
		{name: "extract", args: "CIPHERDIR DEST [PATH]", summary: "decrypt the vault or PATH into DEST without FUSE", run: cmdExtract},
		{name: "version", summary: "print the version", run: cmdVersion},
		{name: "help", summary: "show help", run: cmdHelp},
	}
}

func main() {
	if err := noDumps(); err != nil {
		fmt.Fprintf(os.Stderr, "sealfs: %v\n", err)
		os.Exit(exitError)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
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

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(stdin, stdout, stderr)
	fs := a.flagSet("sealfs")
	fs.Usage = func() { a.usage() }
	// Global flags may come before the subcommand; each subcommand accepts
	// them too, so `sealfs init --tpm X DIR` and `sealfs --tpm X init DIR`
	// both work.
	if err := fs.Parse(args); err != nil {
		return a.exit(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		a.usage()
		return exitUsage
	}
	c := findCommand(rest[0])
	if c == nil {
		return a.exit(usagef("unknown command %q", rest[0]))
	}
	return a.exit(c.run(a, rest[1:]))
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// exit prints err and maps it to an exit code.
func (a *app) exit(err error) int {
	a.closeResources()
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(a.stderr, "sealfs: %v\n", err)
		fmt.Fprintln(a.stderr, "run `sealfs help` for usage")
		return exitUsage
	default:
		fmt.Fprintf(a.stderr, "sealfs: %s\n", userMessage(err))
		return exitError
	}
}

// userMessage prints the TPM's verdicts exactly as issue 3 §3 words them,
// without the call-site prefixes ("tpm: unseal: ") that help in logs but
// bury the one thing the user must read.
func userMessage(err error) string {
	var (
		ae *tpm.AuthError
		le *tpm.LockoutError
		pe *tpm.PCRError
		te *tpm.TriesError
		ee *exhaustedError
	)
	switch {
	case errors.As(err, &ee):
		return ee.Error()
	case errors.As(err, &te):
		return te.Error()
	case errors.As(err, &ae):
		return ae.Error()
	case errors.As(err, &le):
		return le.Error()
	case errors.As(err, &pe):
		return pe.Error()
	case errors.Is(err, tpm.ErrTriesUsedUp):
		return tpm.ErrTriesUsedUp.Error()
	case errors.Is(err, tpm.ErrTriesExhausted):
		return tpm.ErrTriesExhausted.Error()
	case errors.Is(err, tpm.ErrWrongTPM):
		return tpm.ErrWrongTPM.Error()
	case errors.Is(err, tpm.ErrSlotGone):
		return tpm.ErrSlotGone.Error()
	}
	return err.Error()
}

func (a *app) usage() {
	w := a.stderr
	fmt.Fprint(w, `usage: sealfs [global flags] COMMAND [flags] ARGS

An encrypted folder for backups whose key sits in the TPM behind your password.

commands:
`)
	for _, c := range commands {
		if c.hidden {
			continue
		}
		fmt.Fprintf(w, "  %-30s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprint(w, `
global flags (also accepted after the command):
  --tpm SPEC               /dev/tpmrm0 (default), unix:PATH, tcp:HOST:PORT or swtpm:DIR (or $SEALFS_TPM)
  --password-file FILE     read the password from FILE (first line)
  --extpass CMD            run CMD with sh -c; its standard output is the password
  --recovery-key-file FILE read the recovery key from FILE
  --slot ID                use this TPM slot when this TPM holds several
  -v                       debug logging

Attempt limit: every new TPM slot (init, recover, enroll) is attempt-limited: the TPM itself
ends it for good after `+strconv.Itoa(defaultMaxTries)+` consecutive wrong passwords (a right one restores them all), and a
TPM reset of its dictionary-attack lockout does not touch that count. After that only the
recovery key opens the vault (`+"`sealfs recover`"+` makes a fresh slot). `+"`--max-tries N`"+` sets
another limit; `+"`--max-tries 0`"+` makes a plain slot, which only the TPM's lockout throttles
(no limit at all where the TPM has no lockout password, as on most machines).
`+"`passwd --max-tries N`"+` changes the limit of an existing slot, or adds one to a plain slot.

A password is never accepted as an argument. $SEALFS_PASSWORD is read once and
removed from the environment at start, but before that it is visible in
/proc/PID/environ to the same user and root, and to anything that inherited
it: prefer --password-file or --extpass.

exit status: 0 ok, 1 error, 2 usage error. Run `+"`sealfs COMMAND -h`"+` for a command's flags.
`)
}

func cmdHelp(a *app, args []string) error {
	if len(args) == 1 {
		if c := findCommand(args[0]); c != nil && c.name != "help" {
			return c.run(a, []string{"-h"})
		}
	}
	a.usage()
	return nil
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func cmdVersion(a *app, args []string) error {
	fs := a.flagSet("version")
	if _, err := a.parse(fs, args, 0, 0); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "sealfs %s\n", version)
	return nil
}

// newLogger writes text logs to w at the given level.
func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
