package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"

	"golang.org/x/term"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/internal/vault"
)

func cmdInit(a *app, args []string) error {
	fs := a.flagSet("init")
	sf := addSlotFlags(fs)
	noConfirm := fs.Bool("no-confirm", false, "do not ask to type back part of the recovery key (for scripts)")
	showQR := fs.Bool("qr", false, "print the recovery key's QR code even when standard output is not a terminal")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	dir := pos[0]
	if err := checkInitDir(dir); err != nil {
		return err
	}
	opts, err := sf.opts()
	if err != nil {
		return err
	}
	t, err := a.openTPM()
	if err != nil {
		return err
	}
	a.warnPlainSlot(t, opts)
	pw, err := a.password("New vault password", true)
	if err != nil {
		return err
	}
	defer clear(pw)
	v, rk, err := vault.Create(dir, a.log, vault.FromTPM(t), pw, vault.CreateOptions{
		Seal:  opts,
		Label: *sf.label,
	})
	if err != nil {
		return err
	}
	defer v.Wipe()
	defer clear(rk[:])

	out := a.stdout
	fmt.Fprintf(out, "Created a sealfs vault in %s.\n", dir)
	if s := v.TPMSlots(nil); len(s) == 1 {
		a.reportLimit(s[0])
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Recovery key: write it down and keep it away from this machine. It is shown only")
	fmt.Fprintln(out, "this once and opens the vault if this machine, its TPM or your password is lost.")
	fmt.Fprintln(out)
	// One line of 79 characters: fits a terminal, and a script can grep it.
	display := rk.Display()
	defer clear(display)
	out.Write(display)
	fmt.Fprint(out, "\n\n")
	if *showQR || isTerminal(out) {
		// rsc.io/qr takes a string: that copy of the key cannot be wiped.
		if err := writeQR(out, string(display)); err != nil {
			a.log.Warn("could not draw the QR code", "err", err)
		}
		fmt.Fprintln(out)
	}
	if *noConfirm {
		return nil
	}
	if err := confirmRecoveryKey(rk); err != nil {
		// An unconfirmed key may be lost already: take the vault back rather
		// than leave one whose only spare key nobody holds.
		if rmErr := os.Remove(filepath.Join(dir, crypto.HeaderFileName)); rmErr != nil {
			return errors.Join(err, rmErr)
		}
		// No header names the slot any more: free an attempt-limited
		// slot's NV index, which would otherwise stay defined for good.
		for _, s := range v.TPMSlots(nil) {
			if relErr := vault.ReleaseSlot(vault.FromTPM(t), s); relErr != nil {
				a.log.Warn("could not free the TPM NV index of the discarded slot", "nv_index", fmt.Sprintf("%#x", s.TPM.NVIndex), "err", relErr)
			}
		}
		return fmt.Errorf("%w; the vault was not created (use --no-confirm in scripts)", err)
	}
	fmt.Fprintln(out, "Recovery key confirmed.")
	return nil
}

// confirmRecoveryKey asks the user to type back one random group.
func confirmRecoveryKey(rk crypto.RecoveryKey) error {
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
	r := bufio.NewReader(t)
	for attempt := 0; attempt < 3; attempt++ {
		fmt.Fprintf(t, "To confirm you saved it, type group %d of the recovery key: ", i+1)
		line, err := r.ReadBytes('\n')
		ok := bytes.EqualFold(bytes.TrimSpace(line), want)
		clear(line)
		if err != nil {
			return fmt.Errorf("reading the confirmation: %w", err)
		}
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
