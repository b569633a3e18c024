package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/sealfs/sealfs/internal/offline"
	"github.com/sealfs/sealfs/internal/vault"
)

// extract and fsck read the cipher folder directly (internal/offline), so a
// restore and a health check work where FUSE does not: a container, a rescue
// system, another OS's Linux VM. Their exit statuses follow fsck(8)
// (exit.go): 0 no damage found (conflict copies and a sync in progress are
// notes), 1 problems found and all repaired (fsck --repair), 4 problems
// found and left, 8 could not run.

type offlineOptions struct {
	withRecovery bool
	asJSON       bool
	// fsck only
	repair, yes bool
	// extract only
	dest, path              string
	overwrite, skipExisting bool
}

func (a *app) cmdFsck(dir string, o offlineOptions) error {
	if o.yes && !o.repair {
		return usagef("fsck: --yes goes with --repair")
	}
	v, err := a.unlockedVault(dir, o.withRecovery)
	if err != nil {
		return couldNotRun(err)
	}
	bar := a.progress(offline.TotalBytes(dir), "verifying", a.quiet || o.asJSON)
	var r *offline.Report
	a.intr.abandonable(func() {
		r, err = offline.CheckWith(offline.CheckOptions{Keys: v.Keys(), CipherDir: dir, IDRecord: idRecord(v),
			Progress: func(n int64) { _ = bar.Add64(n) }})
	})
	_ = bar.Finish()
	if err == nil {
		err = a.intr.err()
	}
	if err != nil {
		return couldNotRun(fmt.Errorf("fsck: %w", err))
	}
	apply := o.repair && r.Repairable() > 0 && (o.yes || a.confirmRepairs(r))
	if apply {
		if err := offline.Repair(v.Keys(), dir, r); err != nil {
			return couldNotRun(fmt.Errorf("fsck --repair: %w", err))
		}
	}
	if o.asJSON {
		if err := writeJSON(a.stdout, r); err != nil {
			return couldNotRun(err)
		}
		return reportStatus("fsck", r, false)
	}
	fmt.Fprintf(a.stdout, "checked %s (%s in %s)%s%s\n",
		plural(r.Files, "file", "files"), humanBytes(r.CipherBytes), plural64(r.Blocks, "block", "blocks"),
		entryCounts(r, ", "), syncCounts(r))
	printFindings(a.stdout, r, false)
	switch n := r.Repairable(); {
	case n > 0 && o.repair && !apply:
		fmt.Fprintf(a.stdout, "dry run, nothing changed: `sealfs fsck --repair --yes %s` applies the %s above\n",
			dir, plural(n, "repair", "repairs"))
	case n > 0 && !apply:
		fmt.Fprintf(a.stdout, "`sealfs fsck --repair %s` can repair %s (a dry run first); best when the sync service is idle\n",
			dir, plural(n, "finding", "findings"))
	}
	return reportStatus("fsck", r, false)
}

// confirmRepairs lists the planned repairs and asks on a terminal; without
// one, --repair stays a dry run.
func (a *app) confirmRepairs(r *offline.Report) bool {
	in, ok := a.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return false
	}
	fmt.Fprintf(a.stderr, "fsck --repair would:\n")
	for _, p := range r.Problems {
		if p.Repair != "" {
			fmt.Fprintf(a.stderr, "  %s: %s\n", shown(where(p)), p.Repair)
		}
	}
	fmt.Fprintf(a.stderr, "apply %s to the cipher folder? [y/N] ", plural(r.Repairable(), "repair", "repairs"))
	line, _ := bufio.NewReader(in).ReadString('\n')
	answer := strings.ToLower(strings.TrimSpace(line))
	return answer == "y" || answer == "yes"
}

// idRecord is this machine's record of the vault's directory IDs, which
// the mount keeps next to the pins (mount_fs.go); "" without a state
// directory.
func idRecord(v *vault.Vault) string {
	ps, err := vault.DefaultPinStore()
	if err != nil {
		return ""
	}
	return filepath.Join(ps.Dir, "dirids", hex.EncodeToString(v.Header.VaultID))
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
			Overwrite: o.overwrite, IDRecord: idRecord(v), Progress: func(n int64) { _ = bar.Add64(n) }})
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
		fmt.Fprintf(a.stdout, "extracted %s%s (%s read from the vault) into %s%s\n",
			plural(r.Files, "file", "files"), entryCounts(r, ", "), humanBytes(r.CipherBytes), target, syncCounts(r))
		printFindings(a.stdout, r, o.skipExisting)
	}
	return reportStatus("extract", r, o.skipExisting)
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

// isNote: a finding that reports a state rather than damage (a conflict
// copy, a sync in progress: offline.Problem.Note), or, with extract
// --skip-existing, what DEST already held and was kept on purpose.
func isNote(p offline.Problem, skipped bool) bool {
	return p.Note() || (skipped && p.Kind == offline.KindDestination)
}

// reportStatus maps a report to the exit status (fsck(8)): nil when no
// finding counts as a problem, 1 when all were repaired, 4 when some are
// left.
func reportStatus(what string, r *offline.Report, skipped bool) error {
	left := 0
	for _, p := range r.Problems {
		if !isNote(p, skipped) && !p.Repaired {
			left++
		}
	}
	code := r.ExitCode()
	if skipped && left == 0 {
		code = offline.ExitClean
		if r.Repaired() > 0 {
			code = offline.ExitRepaired
		}
	}
	switch code {
	case offline.ExitClean:
		return nil
	case offline.ExitRepaired:
		return &codedError{code: exitRepaired, err: fmt.Errorf("%s: %s found and repaired", what,
			plural(r.Repaired(), "problem", "problems"))}
	}
	return &codedError{code: exitProblems, err: fmt.Errorf("%s: %s found", what, plural(left, "problem", "problems"))}
}

// syncCounts adds what the sync services left that is not damage.
func syncCounts(r *offline.Report) string {
	var parts []string
	if r.ConflictCopies > 0 {
		parts = append(parts, plural(r.ConflictCopies, "conflict copy", "conflict copies"))
	}
	if r.SyncFiles > 0 {
		parts = append(parts, plural(r.SyncFiles, "sync service file", "sync service files")+" ignored")
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, ", ")
}

// printFindings lists the findings by class, problems first, each by its
// path in the vault with the cipher path behind it.
func printFindings(w io.Writer, r *offline.Report, skipped bool) {
	byClass := map[offline.Class][]offline.Problem{}
	var kept []offline.Problem
	for _, p := range r.Problems {
		if skipped && p.Kind == offline.KindDestination {
			kept = append(kept, p)
			continue
		}
		byClass[p.Class] = append(byClass[p.Class], p)
	}
	damaged := 0
	for _, p := range r.Problems {
		if !isNote(p, skipped) && !p.Repaired {
			damaged++
		}
	}
	if damaged == 0 && r.Repaired() == 0 {
		fmt.Fprintln(w, "no problems found")
	}
	for _, c := range offline.Classes {
		ps := byClass[c]
		if len(ps) == 0 {
			continue
		}
		note := ""
		if ps[0].Note() {
			note = ", notes: not damage"
		}
		fmt.Fprintf(w, "%s (%d%s):\n", c.Title(), len(ps), note)
		for _, p := range ps {
			printProblem(w, p)
		}
	}
	if len(kept) > 0 {
		fmt.Fprintf(w, "%s (not problems):\n", plural(len(kept), "note", "notes"))
		for _, p := range kept {
			fmt.Fprintf(w, "  kept what was there: %s\n", shown(p.PlainPath))
		}
	}
	if n := r.Repaired(); n > 0 {
		fmt.Fprintf(w, "repaired %s\n", plural(n, "finding", "findings"))
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
	if p.PlainPath == "" && p.PlainDir == "" {
		fmt.Fprintf(w, "  %s: %s: %s\n", p.Kind, shown(p.CipherPath), shown(p.Detail))
	} else {
		fmt.Fprintf(w, "  %s: %s: %s\n      (stored as %s)\n", p.Kind, shown(where(p)), shown(p.Detail), shown(p.CipherPath))
	}
	switch {
	case p.Repaired:
		fmt.Fprintf(w, "      repaired: %s\n", p.Repair)
	case p.RepairError != "":
		fmt.Fprintf(w, "      not repaired (%s): %s\n", p.Repair, shown(p.RepairError))
	case p.Repair != "":
		fmt.Fprintf(w, "      repair: %s\n", p.Repair)
	}
}

// where is a finding's place in the vault.
func where(p offline.Problem) string {
	switch {
	case p.PlainPath != "":
		return p.PlainPath
	case p.PlainDir != "":
		return "in " + p.PlainDir + "/"
	case p.CipherPath != "":
		return p.CipherPath
	}
	return "the vault's top"
}

// shown escapes what a terminal would interpret: names in the cipher
// folder are anyone's, and plaintext names may hold control characters.
func shown(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
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
