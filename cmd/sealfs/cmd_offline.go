package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/sealfs/sealfs/internal/offline"
	"github.com/sealfs/sealfs/internal/vault"
)

// extract and fsck read the cipher folder directly (internal/offline), so a
// restore and a health check work where FUSE does not: a container, a rescue
// system, another OS's Linux VM.

func cmdExtract(a *app, args []string) error {
	fs := a.flagSet("extract")
	withRecovery := fs.Bool("with-recovery", false, "unlock with the recovery key (prompted) instead of this machine's password")
	quiet := fs.Bool("q", false, "no progress bar")
	pos, err := a.parse(fs, args, 2, 3)
	if err != nil {
		return err
	}
	v, err := a.unlockedVault(pos[0], *withRecovery)
	if err != nil {
		return err
	}
	sub := ""
	if len(pos) == 3 {
		sub = pos[2]
	}
	bar := a.progress(offline.TotalBytes(pos[0]), "extracting", *quiet)
	r, err := offline.Extract(offline.ExtractOptions{Keys: v.Keys(), CipherDir: pos[0], Dest: pos[1], Path: sub,
		Progress: func(n int64) { _ = bar.Add64(n) }})
	_ = bar.Finish()
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	fmt.Fprintf(a.stdout, "extracted %d files, %d directories, %d symlinks, %d other into %s\n",
		r.Files, r.Dirs, r.Symlinks, r.Other, pos[1])
	return problemsError(a.stdout, r, "extract")
}

func cmdFsck(a *app, args []string) error {
	fs := a.flagSet("fsck")
	withRecovery := fs.Bool("with-recovery", false, "unlock with the recovery key (prompted) instead of this machine's password")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("q", false, "no progress bar")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	v, err := a.unlockedVault(pos[0], *withRecovery)
	if err != nil {
		return err
	}
	bar := a.progress(offline.TotalBytes(pos[0]), "verifying", *quiet || *asJSON)
	r, err := offline.Check(v.Keys(), pos[0], func(n int64) { _ = bar.Add64(n) })
	_ = bar.Finish()
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
		if !r.OK() {
			return fmt.Errorf("fsck: %d problem(s) found", len(r.Problems))
		}
		return nil
	}
	fmt.Fprintf(a.stdout, "checked %d files (%d blocks, %d bytes), %d directories, %d symlinks, %d other\n",
		r.Files, r.Blocks, r.CipherBytes, r.Dirs, r.Symlinks, r.Other)
	return problemsError(a.stdout, r, "fsck")
}

// unlockedVault loads and unlocks a vault for reading; it is wiped when the
// command ends.
func (a *app) unlockedVault(dir string, withRecovery bool) (*vault.Vault, error) {
	v, err := a.loadVault(dir)
	if err != nil {
		return nil, err
	}
	if err := a.unlock(v, withRecovery); err != nil {
		return nil, err
	}
	return v, nil
}

// problemsError lists the report's problems and turns them into the
// command's failure (exit 1).
func problemsError(w io.Writer, r *offline.Report, what string) error {
	if r.OK() {
		fmt.Fprintln(w, "no problems found")
		return nil
	}
	for _, p := range r.Problems {
		fmt.Fprintln(w, p)
	}
	return fmt.Errorf("%s: %d problem(s) found", what, len(r.Problems))
}

// progress returns a byte-sized progress bar on stderr when it is a terminal
// (and a silent one otherwise, so scripts and logs stay clean).
func (a *app) progress(total int64, what string, quiet bool) *progressbar.ProgressBar {
	f, ok := a.stderr.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return progressbar.DefaultBytesSilent(total, what)
	}
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30), progressbar.OptionThrottle(100e6),
		progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
}
