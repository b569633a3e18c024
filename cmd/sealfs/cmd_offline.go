package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
// system, another OS's Linux VM. Their exit statuses follow fsck(8): 0 no
// damage found (conflict copies and a sync in progress are notes), 1
// problems found and all repaired (fsck --repair), 4 problems found and
// left, 8 could not run (wrong password, TPM error, unreadable folder), 2
// usage.

// Exit statuses of fsck and extract other than 0 and 2.
const exitCouldNotRun = 8

// offlineExit ends fsck or extract with an fsck(8) status. main's exit
// maps every error to 1, so this one exits itself, after releasing what the
// command holds (the key wipes, a managed swtpm).
func (a *app) offlineExit(code int, err error) error {
	if code == offline.ExitClean {
		return nil
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "sealfs: %s\n", userMessage(err))
	}
	a.closeResources()
	os.Exit(code)
	return nil
}

func cmdExtract(a *app, args []string) error {
	fs := a.flagSet("extract")
	withRecovery := fs.Bool("with-recovery", false, "unlock with the recovery key (prompted) instead of this machine's password")
	quiet := fs.Bool("q", false, "no progress bar")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	pos, err := a.parse(fs, args, 2, 3)
	if err != nil {
		return err
	}
	v, err := a.unlockedVault(pos[0], *withRecovery)
	if err != nil {
		return a.offlineExit(exitCouldNotRun, err)
	}
	sub := ""
	if len(pos) == 3 {
		sub = pos[2]
	}
	bar := a.progress(offline.TotalBytes(pos[0]), "extracting", *quiet || *asJSON)
	r, err := offline.Extract(offline.ExtractOptions{Keys: v.Keys(), CipherDir: pos[0], Dest: pos[1], Path: sub,
		IDRecord: idRecord(v), Progress: func(n int64) { _ = bar.Add64(n) }})
	_ = bar.Finish()
	if err != nil {
		return a.offlineExit(exitCouldNotRun, fmt.Errorf("extract: %w", err))
	}
	if *asJSON {
		if err := writeJSON(a.stdout, r); err != nil {
			return a.offlineExit(exitCouldNotRun, err)
		}
	} else {
		fmt.Fprintf(a.stdout, "extracted %d files, %d directories, %d symlinks, %d other into %s%s\n",
			r.Files, r.Dirs, r.Symlinks, r.Other, pos[1], syncCounts(r))
		printFindings(a.stdout, r)
	}
	return a.offlineExit(r.ExitCode(), problemsError("extract", r))
}

func cmdFsck(a *app, args []string) error {
	fs := a.flagSet("fsck")
	withRecovery := fs.Bool("with-recovery", false, "unlock with the recovery key (prompted) instead of this machine's password")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("q", false, "no progress bar")
	repair := fs.Bool("repair", false, "repair what is mechanical (a lost sealfs.dirid, names of another directory, "+
		"leftovers): a dry run that asks on a terminal, unless --yes")
	yes := fs.Bool("yes", false, "with --repair: apply the repairs without asking")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *yes && !*repair {
		return usagef("fsck: --yes goes with --repair")
	}
	dir := pos[0]
	v, err := a.unlockedVault(dir, *withRecovery)
	if err != nil {
		return a.offlineExit(exitCouldNotRun, err)
	}
	bar := a.progress(offline.TotalBytes(dir), "verifying", *quiet || *asJSON)
	r, err := offline.CheckWith(offline.CheckOptions{Keys: v.Keys(), CipherDir: dir, IDRecord: idRecord(v),
		Progress: func(n int64) { _ = bar.Add64(n) }})
	_ = bar.Finish()
	if err != nil {
		return a.offlineExit(exitCouldNotRun, fmt.Errorf("fsck: %w", err))
	}
	apply := *repair && r.Repairable() > 0 && (*yes || a.confirmRepairs(r))
	if apply {
		if err := offline.Repair(v.Keys(), dir, r); err != nil {
			return a.offlineExit(exitCouldNotRun, fmt.Errorf("fsck --repair: %w", err))
		}
	}
	if *asJSON {
		if err := writeJSON(a.stdout, r); err != nil {
			return a.offlineExit(exitCouldNotRun, err)
		}
		return a.offlineExit(r.ExitCode(), problemsError("fsck", r))
	}
	fmt.Fprintf(a.stdout, "checked %d files (%d blocks, %d bytes), %d directories, %d symlinks, %d other%s\n",
		r.Files, r.Blocks, r.CipherBytes, r.Dirs, r.Symlinks, r.Other, syncCounts(r))
	printFindings(a.stdout, r)
	switch n := r.Repairable(); {
	case n > 0 && *repair && !apply:
		fmt.Fprintf(a.stdout, "dry run, nothing changed: `sealfs fsck --repair --yes %s` applies the %s above\n",
			dir, plural(n, "repair", "repairs"))
	case n > 0:
		fmt.Fprintf(a.stdout, "`sealfs fsck --repair %s` can repair %s (a dry run first); best when the sync service is idle\n",
			dir, plural(n, "finding", "findings"))
	}
	return a.offlineExit(r.ExitCode(), problemsError("fsck", r))
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

// problemsError is the one-line verdict on stderr when problems are left.
func problemsError(what string, r *offline.Report) error {
	if n := r.Damaged(); n > 0 {
		return fmt.Errorf("%s: %s found", what, plural(n, "problem", "problems"))
	}
	return nil
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
func printFindings(w io.Writer, r *offline.Report) {
	byClass := map[offline.Class][]offline.Problem{}
	for _, p := range r.Problems {
		byClass[p.Class] = append(byClass[p.Class], p)
	}
	if r.Damaged() == 0 && r.Repaired() == 0 {
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
	if n := r.Repaired(); n > 0 {
		fmt.Fprintf(w, "repaired %s\n", plural(n, "finding", "findings"))
	}
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

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
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
