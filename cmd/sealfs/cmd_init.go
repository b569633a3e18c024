package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"

	"golang.org/x/term"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/vault"
)

type initOptions struct {
	slot      *slotFlags
	noConfirm bool
	qr        bool
}

func (a *app) cmdInit(dir string, o initOptions) error {
	if err := checkInitDir(dir); err != nil {
		return err
	}
	_, statErr := os.Stat(dir)
	madeDir := errors.Is(statErr, fs.ErrNotExist)
	opts, err := o.slot.opts()
	if err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	a.softwareTPMNote(t)
	a.warnPlainSlot(t, opts)
	pw, err := a.password("New vault password", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	v, rk, err := vault.Create(dir, a.log, vault.FromTPM(t), pw, vault.CreateOptions{
		Seal:  opts,
		Label: o.slot.labelOrHost(),
	})
	if err != nil {
		return err
	}
	defer v.Wipe()
	defer clear(rk[:])
	// An unconfirmed key may be lost already, and an interrupted init never
	// showed it: take the vault back rather than leave one whose only spare
	// key nobody holds.
	discard := func(cause error) error {
		err := v.Discard(vault.FromTPM(t))
		if madeDir {
			os.Remove(dir) // only if empty: nothing else was ever there
		}
		if err != nil {
			a.log.Warn("could not take back all of the unfinished vault", "err", err)
		}
		if errors.Is(cause, errInterrupted) {
			return fmt.Errorf("%w; the vault was not created", cause)
		}
		return fmt.Errorf("%w; the vault was not created (use --no-confirm in scripts)", cause)
	}
	if err := a.intr.err(); err != nil {
		return discard(err)
	}

	out := a.stdout
	fmt.Fprintf(out, "Created a sealfs vault in %s.\n", dir)
	if s := v.TPMSlots(nil); len(s) == 1 {
		a.reportLimit(s[0])
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "Recovery key (%s):\n\n", recoveryKeyShort)
	// One line of 79 characters: fits a terminal, and a script can grep it.
	display := rk.Display()
	defer clear(display)
	out.Write(display)
	fmt.Fprint(out, "\n\n")
	fmt.Fprintln(out, "Write it down and keep it away from this machine. It is shown only this once and")
	fmt.Fprintln(out, "opens the vault if this machine, its TPM or your password is lost.")
	fmt.Fprintln(out)
	if o.qr || isTerminal(out) {
		// rsc.io/qr takes a string: that copy of the key cannot be wiped.
		if err := writeQR(out, string(display)); err != nil {
			a.log.Warn("could not draw the QR code", "err", err)
		}
		fmt.Fprintln(out)
	}
	if o.noConfirm {
		return nil
	}
	if err := a.confirmRecoveryKey(rk); err != nil {
		return discard(err)
	}
	fmt.Fprintln(out, "Recovery key confirmed.")
	return nil
}

// confirmRecoveryKey asks the user to type back one random group.
func (a *app) confirmRecoveryKey(rk crypto.RecoveryKey) error {
	t, err := tty()
	if err != nil {
		return errors.New("no terminal to confirm the recovery key")
	}
	defer t.Close()
	display := rk.Display()
	defer clear(display)
	const groups, groupLen = 8, 9 // crypto.RecoveryKey.Display: 8 groups of 9, dashes between
	n, err := rand.Int(rand.Reader, big.NewInt(groups))
	if err != nil {
		return err
	}
	i := int(n.Int64())
	want := display[i*(groupLen+1) : i*(groupLen+1)+groupLen]
	for attempt := 0; attempt < 3; attempt++ {
		fmt.Fprintf(t, "To confirm you saved it, type group %d of the recovery key: ", i+1)
		line, err := a.readLine(t, 256)
		if err != nil {
			fmt.Fprintln(t)
			if errors.Is(err, errInterrupted) {
				return err
			}
			return fmt.Errorf("reading the confirmation: %w", err)
		}
		ok := bytes.EqualFold(bytes.TrimSpace(line), want)
		clear(line)
		if ok {
			return nil
		}
		fmt.Fprintln(t, "That does not match.")
	}
	return errors.New("the recovery key was not confirmed")
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
