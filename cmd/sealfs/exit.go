package main

import (
	"errors"
	"fmt"

	"github.com/sealfs/sealfs/tpm"
)

// Exit statuses (sealfs(1), EXIT STATUS). Every command: 0 success, 1
// failure, 2 usage error, 128+N when ended by signal N (130 SIGINT, 143
// SIGTERM, 129 SIGHUP). fsck and extract follow fsck(8) instead of 1:
// 1 problems found and all repaired, 4 problems found and left, 8 could
// not run (wrong password, TPM error, unreadable folder).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitRepaired    = 1
	exitProblems    = 4
	exitCouldNotRun = 8
	exitSignalBase  = 128
)

// usageError marks a command-line mistake (exit status 2). cmd, when set,
// is the command whose --help the message points to.
type usageError struct {
	msg string
	cmd string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// codedError is a failure with an exit status other than 1. A nil err
// prints nothing: the command has said everything on its standard output.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *codedError) Unwrap() error { return e.err }

// couldNotRun marks an fsck or extract that did not get to look at the
// vault (exit status 8).
func couldNotRun(err error) error {
	var ue *usageError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	return &codedError{code: exitCouldNotRun, err: err}
}

// errHelp: help was asked for and shown.
var errHelp = errors.New("help shown")

// exit releases what the command holds (a managed swtpm is shut down in
// order here), prints err and maps it to the exit status.
func (a *app) exit(err error) int {
	a.closeResources()
	if err == nil || errors.Is(err, errHelp) {
		return exitOK
	}
	if sig := a.intr.received(); sig != 0 {
		msg := userMessage(err)
		if !errors.Is(err, errInterrupted) {
			msg = interruptedError{sig}.Error() + " (" + msg + ")"
		}
		fmt.Fprintf(a.stderr, "sealfs: %s\n", msg)
		return exitSignalBase + int(sig)
	}
	var (
		ue *usageError
		ce *codedError
	)
	switch {
	case errors.As(err, &ue):
		help := "sealfs --help"
		if ue.cmd != "" {
			help = ue.cmd + " --help"
		}
		fmt.Fprintf(a.stderr, "sealfs: %s (see `%s`)\n", ue.msg, help)
		return exitUsage
	case errors.As(err, &ce):
		if ce.err != nil {
			fmt.Fprintf(a.stderr, "sealfs: %s\n", userMessage(ce.err))
		}
		return ce.code
	}
	fmt.Fprintf(a.stderr, "sealfs: %s\n", userMessage(err))
	return exitError
}

// userMessage prints the TPM's verdicts exactly as issue 3 §3 words them,
// without the call-site prefixes ("tpm: unseal: ") that help in logs but
// bury the one thing the user must read. Advice added by explainUnlock
// comes first, since it wraps the verdict.
func userMessage(err error) string {
	var (
		ad *adviceError
		fe *foreignSlotError
		ae *tpm.AuthError
		le *tpm.LockoutError
		pe *tpm.PCRError
		te *tpm.TriesError
		ee *exhaustedError
	)
	switch {
	case errors.As(err, &ad):
		return ad.Error()
	case errors.As(err, &fe):
		return fe.Error()
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
