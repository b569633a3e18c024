package main

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/sealfs/sealfs/crypto"
)

// errNoTerminal explains how to pass a secret when nothing can prompt.
var errNoTerminal = errors.New("no terminal to ask for the password: use --password-file, --extpass or $" + envPassword +
	" (see `sealfs help passwords`)")

// tty opens the controlling terminal, so prompts work even with standard
// input redirected.
func tty() (*os.File, error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, errNoTerminal
	}
	if !term.IsTerminal(int(f.Fd())) {
		f.Close()
		return nil, errNoTerminal
	}
	return f, nil
}

// readLine reads one line from the terminal t, which is in canonical mode
// (the kernel edits the line; a read returns at most one), into a buffer
// allocated once, so that no partial copy of a secret is left behind by a
// growing one. A signal ends the wait with errInterrupted; a line longer
// than max is refused. On error nothing read is kept.
func (a *app) readLine(t *os.File, max int) ([]byte, error) {
	fd := int(t.Fd())
	buf := make([]byte, 0, max+1)
	var chunk [256]byte
	defer clear(chunk[:])
	fail := func(err error) ([]byte, error) {
		clear(buf[:cap(buf)])
		return nil, err
	}
	for {
		if err := a.intr.waitReadable(fd); err != nil {
			return fail(err)
		}
		n, err := unix.Read(fd, chunk[:])
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.EIO):
			// A hung-up terminal; its SIGHUP may be on the way.
			if serr := a.intr.await(time.Second); serr != nil {
				return fail(serr)
			}
			return fail(errHangup)
		case err != nil:
			return fail(err)
		case n == 0: // end of input (Ctrl-D)
			if len(buf) == 0 {
				return fail(io.EOF)
			}
			return bytes.TrimSuffix(buf, []byte("\r")), nil
		}
		line, _, complete := bytes.Cut(chunk[:n], []byte("\n"))
		if len(buf)+len(line) > max {
			return fail(errSecretTooLong)
		}
		buf = append(buf, line...)
		if complete {
			return bytes.TrimSuffix(buf, []byte("\r")), nil
		}
	}
}

// readHidden prints prompt and reads a line with echo off. Echo goes off
// before the prompt appears, so that whatever is typed as soon as it shows
// (a fast typist, a password manager's auto-type, a test) is not echoed,
// and comes back however the read ends, an interruption included.
func (a *app) readHidden(t *os.File, prompt string) ([]byte, error) {
	fd := int(t.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("terminal settings: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	a.intr.setTerminal(fd, old)
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		a.intr.setTerminal(-1, nil)
		return nil, fmt.Errorf("turning echo off: %w", err)
	}
	defer func() {
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
		a.intr.setTerminal(-1, nil)
	}()
	fmt.Fprint(t, prompt)
	b, err := a.readLine(t, maxSecret)
	fmt.Fprintln(t)
	return b, err
}

func (a *app) promptPassword(prompt string, confirm bool) ([]byte, error) {
	t, err := tty()
	if err != nil {
		return nil, err
	}
	defer t.Close()
	read := func(p string) ([]byte, error) {
		b, err := a.readHidden(t, p)
		switch {
		case errors.Is(err, errInterrupted):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("reading the password: %w", err)
		case len(b) == 0:
			return nil, errors.New("empty password")
		}
		return b, nil
	}
	p, err := read(prompt + ": ")
	if err != nil || !confirm {
		return p, err
	}
	again, err := read("Repeat " + strings.ToLower(prompt[:1]) + prompt[1:] + ": ")
	if err != nil {
		clear(p)
		return nil, err
	}
	defer clear(again)
	if subtle.ConstantTimeCompare(p, again) != 1 {
		clear(p)
		return nil, errors.New("the passwords do not match")
	}
	return p, nil
}

// recoveryKey reads the recovery key from --recovery-key-file or the
// terminal. A typo is reported with its group before any unlock is tried;
// on a terminal the user gets three attempts.
func (a *app) recoveryKey() (crypto.RecoveryKey, error) {
	if a.recoveryKeyFile != "" {
		b, err := readSecretFile(a.recoveryKeyFile, "recovery key")
		if err != nil {
			return crypto.RecoveryKey{}, err
		}
		defer clear(b)
		return crypto.ParseRecoveryKeyBytes(b)
	}
	t, err := tty()
	if err != nil {
		return crypto.RecoveryKey{}, errors.New("no terminal to ask for the recovery key: use --recovery-key-file")
	}
	defer t.Close()
	for attempt := 1; ; attempt++ {
		b, err := a.readHidden(t, "Recovery key (8 groups of 9 characters; spaces, dashes and case do not matter): ")
		if errors.Is(err, errInterrupted) {
			return crypto.RecoveryKey{}, err
		}
		if err != nil {
			return crypto.RecoveryKey{}, fmt.Errorf("reading the recovery key: %w", err)
		}
		rk, err := crypto.ParseRecoveryKeyBytes(b)
		clear(b)
		if err == nil || attempt == 3 {
			return rk, err
		}
		fmt.Fprintf(t, "%v; try again.\n", err)
	}
}
