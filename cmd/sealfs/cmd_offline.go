package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/sealfs/sealfs/internal/offline"
	"github.com/sealfs/sealfs/internal/vault"
)

// extract and fsck read the cipher folder directly (internal/offline), so a
// restore and a health check work where FUSE does not: a container, a rescue
// system, another OS's Linux VM. Their exit statuses follow fsck(8)
// (exit.go): 0 clean, 4 problems left, 8 could not run.

type offlineOptions struct {
	withRecovery bool
	asJSON       bool
	// extract only
	dest, path              string
	overwrite, skipExisting bool
}

func (a *app) cmdFsck(dir string, o offlineOptions) error {
	v, err := a.unlockedVault(dir, o.withRecovery)
	if err != nil {
		return couldNotRun(err)
	}
	bar := a.progress(offline.TotalBytes(dir), "verifying", a.quiet || o.asJSON)
	var r *offline.Report
	a.intr.abandonable(func() {
		r, err = offline.Check(v.Keys(), dir, func(n int64) { _ = bar.Add64(n) })
	})
	_ = bar.Finish()
	if err == nil {
		err = a.intr.err()
	}
	if err != nil {
		return couldNotRun(fmt.Errorf("fsck: %w", err))
	}
	if o.asJSON {
		if err := writeJSON(a.stdout, r); err != nil {
			return couldNotRun(err)
		}
	} else {
		fmt.Fprintf(a.stdout, "checked %s (%s in %s)%s\n",
			plural(r.Files, "file", "files"), humanBytes(r.CipherBytes), plural64(r.Blocks, "block", "blocks"), entryCounts(r, ", "))
		printProblems(a.stdout, r.Problems, false)
	}
	return reportStatus("fsck", r.Problems, false)
}

func (a *app) cmdExtract(dir string, o offlineOptions) error {
	if o.overwrite && o.skipExisting {
		return usagef("extract: choose --overwrite or --skip-existing, not both")
	}
	target := o.dest
	if o.path != "" {
		target = filepath.Join(o.dest, filepath.Clean("/"+o.path))
	}
	if !o.overwrite && !o.skipExisting {
		// Before the password: nothing is unlocked for an extract that
		// cannot start.
		if err := checkNewTarget(target); err != nil {
			return couldNotRun(err)
		}
	}
	v, err := a.unlockedVault(dir, o.withRecovery)
	if err != nil {
		return couldNotRun(err)
	}
	bar := a.progress(offline.TotalBytes(dir), "extracting", a.quiet || o.asJSON)
	var r *offline.Report
	a.intr.abandonable(func() {
		r, err = offline.Extract(offline.ExtractOptions{Keys: v.Keys(), CipherDir: dir, Dest: o.dest, Path: o.path,
			Overwrite: o.overwrite, Progress: func(n int64) { _ = bar.Add64(n) }})
	})
	_ = bar.Finish()
	if err == nil {
		err = a.intr.err()
	}
	if err != nil {
		if o.path != "" && errors.Is(err, fs.ErrNotExist) {
			// The cipher path in the error means nothing to the user.
			return couldNotRun(fmt.Errorf("extract: %s is not in the vault (give the path as the mount shows it, "+
				"from the vault's top, e.g. photos/2024)", o.path))
		}
		return couldNotRun(fmt.Errorf("extract: %w", err))
	}
	if o.asJSON {
		if err := writeJSON(a.stdout, struct {
			CipherDir string `json:"cipher_dir"`
			Dest      string `json:"dest"`
			Path      string `json:"path,omitempty"`
			*offline.Report
		}{dir, o.dest, o.path, r}); err != nil {
			return couldNotRun(err)
		}
	} else {
		fmt.Fprintf(a.stdout, "extracted %s%s (%s read from the vault) into %s\n",
			plural(r.Files, "file", "files"), entryCounts(r, ", "), humanBytes(r.CipherBytes), target)
		printProblems(a.stdout, r.Problems, o.skipExisting)
	}
	return reportStatus("extract", r.Problems, o.skipExisting)
}

// checkNewTarget refuses an extract into a target that exists and is not an
// empty directory, and says how to choose.
func checkNewTarget(target string) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		f, err := os.Open(target)
		if err != nil {
			return err
		}
		names, _ := f.Readdirnames(1)
		f.Close()
		if len(names) == 0 {
			return nil
		}
	}
	return fmt.Errorf("extract: %s already exists and is not an empty folder; extract into a new folder, or choose "+
		"what happens to what is there: --skip-existing keeps it and extracts the rest, "+
		"--overwrite replaces it with the vault's version", target)
}

// unlockedVault loads and unlocks a vault for reading; it is wiped when the
// command ends. The TPM is not needed after the unlock: a software TPM is
// released for other commands at once.
func (a *app) unlockedVault(dir string, withRecovery bool) (*vault.Vault, error) {
	v, err := a.loadVault(dir)
	if err != nil {
		return nil, err
	}
	if err := a.unlock(v, withRecovery); err != nil {
		return nil, err
	}
	a.closeTPMs()
	return v, a.intr.err()
}

// noteKinds are problem kinds that report a state rather than damage, and
// so do not count against the exit status (issue 15: sync conflict copies,
// a sync in progress). skipped is extract --skip-existing: what DEST
// already held is kept on purpose.
var noteKinds = map[string]bool{}

func isNote(p offline.Problem, skipped bool) bool {
	return noteKinds[p.Kind] || (skipped && p.Kind == offline.KindDestination)
}

// reportStatus maps a report to the exit status: nil when nothing counts
// as a problem, exit status 4 otherwise (1 once fsck --repair exists and
// repaired them all).
func reportStatus(what string, ps []offline.Problem, skipped bool) error {
	n := 0
	for _, p := range ps {
		if !isNote(p, skipped) {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return &codedError{code: problemStatus(n, n), err: fmt.Errorf("%s: %s found", what, plural(n, "problem", "problems"))}
}

// problemStatus is fsck(8)'s status for found problems of which left remain.
func problemStatus(found, left int) int {
	switch {
	case found == 0:
		return exitOK
	case left == 0:
		return exitRepaired
	}
	return exitProblems
}

// printProblems lists problems by their path in the vault, the cipher file
// behind each on a second line.
func printProblems(w io.Writer, ps []offline.Problem, skipped bool) {
	var problems, notes []offline.Problem
	for _, p := range ps {
		if isNote(p, skipped) {
			notes = append(notes, p)
		} else {
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		fmt.Fprintln(w, "no problems found")
	} else {
		fmt.Fprintf(w, "%s:\n", plural(len(problems), "problem", "problems"))
		for _, p := range problems {
			printProblem(w, p)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "%s (not problems):\n", plural(len(notes), "note", "notes"))
		for _, p := range notes {
			if skipped && p.Kind == offline.KindDestination {
				fmt.Fprintf(w, "  kept what was there: %s\n", p.PlainPath)
				continue
			}
			printProblem(w, p)
		}
	}
}

// entryCounts lists the directories, symlinks and other entries of a
// report that there are, each after sep.
func entryCounts(r *offline.Report, sep string) string {
	var b strings.Builder
	for _, c := range []struct {
		n         int
		one, many string
	}{{r.Dirs, "directory", "directories"}, {r.Symlinks, "symlink", "symlinks"}, {r.Other, "other entry", "other entries"}} {
		if c.n > 0 {
			b.WriteString(sep + plural(c.n, c.one, c.many))
		}
	}
	return b.String()
}

func printProblem(w io.Writer, p offline.Problem) {
	if p.PlainPath == "" || p.PlainPath == p.CipherPath {
		fmt.Fprintf(w, "  %s: %s: %s\n", p.Kind, p.CipherPath, p.Detail)
		return
	}
	fmt.Fprintf(w, "  %s: %s: %s\n      (stored as %s)\n", p.Kind, p.PlainPath, p.Detail, p.CipherPath)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// humanBytes is a size in IEC units, one decimal: "1.9 GiB".
func humanBytes(n int64) string {
	if n < 1024 {
		return plural64(n, "byte", "bytes")
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func plural(n int, one, many string) string { return plural64(int64(n), one, many) }

func plural64(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
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
