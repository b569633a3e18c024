package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runPlain runs sealfs without a TPM or vault: help, version, usage errors.
func runPlain(t *testing.T, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(sealfsBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCLIHelpVersionUsage: --version and version; per-command help with a
// synopsis, a description and only the flags that apply (internal ones
// hidden); an unknown flag is one line with a pointer to --help, exit 2;
// flags before the command name still work.
func TestCLIHelpVersionUsage(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := runPlain(t, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "sealfs ") || r.stderr != "" {
			t.Errorf("sealfs %v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"mount", "--help"},
			[]string{"Usage: sealfs mount CIPHERDIR MOUNTPOINT [flags]", "Unlock the vault in CIPHERDIR", "-f, --foreground",
				"--idle DURATION", "minutes (30) or with a unit (90s, 30m, 1h30m)", "--nonempty", "-o, --options OPTIONS", "--password-file FILE"},
			[]string{"--daemon", "--new-password-file", "--max-tries", "--json", "Usage of"}},
		{[]string{"help", "unmount"},
			[]string{"Usage: sealfs unmount MOUNTPOINT", "Aliases: unmount, lock"},
			[]string{"--password-file", "--tpm", "--extpass", "--slot"}},
		{[]string{"lock", "-h"}, []string{"Usage: sealfs unmount MOUNTPOINT"}, []string{"--tpm"}},
		{[]string{"version", "--help"}, []string{"Usage: sealfs version"}, []string{"--password-file", "--tpm"}},
		{[]string{"recover", "--help"}, []string{"sealfs enroll instead"}, nil},
		{[]string{"enroll", "--help"}, []string{"use sealfs recover when this machine's own slot is lost"}, nil},
		{[]string{"fsck", "--help"}, []string{"0 no damage found, 1 problems found and all", "4 problems found and left",
			"8 could not run", "--repair"}, nil},
		{[]string{"help", "exit-status"}, []string{"130", "143", "fsck, as fsck(8)"}, []string{"Usage:"}},
		{[]string{"help", "recovery-key"}, []string{"72 characters: 8 groups of 9, each 8\nhexadecimal digits"}, nil},
		{[]string{"--help"}, []string{"Usage: sealfs COMMAND", "mounts", "Help topics"}, []string{"completion bash"}},
	} {
		r := runPlain(t, tc.args...)
		if r.code != 0 {
			t.Errorf("sealfs %v: exit %d: %s", tc.args, r.code, r.stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("sealfs %v lacks %q:\n%s", tc.args, w, r.stdout)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(r.stdout, n) {
				t.Errorf("sealfs %v shows %q:\n%s", tc.args, n, r.stdout)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mount", "--bogus", "a", "b"}, "sealfs: mount: unknown flag: --bogus (see `sealfs mount --help`)\n"},
		{[]string{"unmount", "--password-file", "x", "/mnt"}, "sealfs: unmount: unknown flag: --password-file (see `sealfs unmount --help`)\n"},
		{[]string{"mount", "--idle", "soon", "a", "b"}, `sealfs: mount: invalid argument "soon" for "--idle" flag: want minutes (30) or a duration with a unit (90s, 30m, 1h30m), got "soon" (see ` + "`sealfs mount --help`)\n"},
		{[]string{"init"}, "sealfs: init: want CIPHERDIR, got none (see `sealfs init --help`)\n"},
		{[]string{"frobnicate"}, "sealfs: unknown command \"frobnicate\" (see `sealfs --help`)\n"},
		{[]string{"extract", "--overwrite", "--skip-existing", "a", "b"}, "extract: choose --overwrite or --skip-existing, not both"},
		{[]string{"help", "nothing"}, "sealfs: help: no command or help topic \"nothing\""},
		{[]string{"completion", "tcsh"}, "sealfs: completion: no script for \"tcsh\"; want bash, zsh, fish or powershell"},
		{[]string{"version", "extra"}, "sealfs: version: takes no arguments, got extra"},
	} {
		r := runPlain(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
			t.Errorf("sealfs %v: exit %d, stdout %q, stderr %q; want exit 2 and the one line %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
}

// TestCLICompletions: the committed completion scripts are what the binary
// prints, bash completes commands and flags through them, and zsh and fish
// accept theirs.
func TestCLICompletions(t *testing.T) {
	repo := repoRoot(t)
	for shell, file := range map[string]string{"bash": "sealfs.bash", "zsh": "_sealfs", "fish": "sealfs.fish"} {
		r := runPlain(t, "completion", shell)
		want, err := os.ReadFile(filepath.Join(repo, "dist", "completion", file))
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 || r.stdout != string(want) {
			t.Errorf("sealfs completion %s differs from dist/completion/%s (run go generate ./cmd/sealfs)", shell, file)
		}
		check := map[string][]string{"zsh": {"zsh", "-n"}, "fish": {"fish", "--no-execute"}}[shell]
		if check == nil {
			continue
		}
		if _, err := exec.LookPath(check[0]); err != nil {
			t.Logf("%s not installed: its completion script is not syntax-checked", check[0])
			continue
		}
		if out, err := exec.Command(check[0], append(check[1:], filepath.Join(repo, "dist", "completion", file))...).CombinedOutput(); err != nil {
			t.Errorf("%s rejects dist/completion/%s: %v\n%s", shell, file, err, out)
		}
	}
	// bash, for real: the script asks the binary (sealfs __complete). It
	// needs bash-completion, as every Debian desktop has.
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Skipf("bash-completion not installed (%v): bash completion not tried", err)
	}
	bin := t.TempDir()
	if err := os.Symlink(sealfsBin, filepath.Join(bin, "sealfs")); err != nil {
		t.Fatal(err)
	}
	complete := func(line string) string {
		script := `source ` + bashCompletion + `; source "$1"; COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"
			[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1))
			__start_sealfs sealfs; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", "-c", script, "bash", filepath.Join(repo, "dist", "completion", "sealfs.bash"), line)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		// compopt complains outside an interactive completion: stderr is
		// not part of the answer.
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s", line, err, out)
		}
		return string(out)
	}
	for line, want := range map[string][]string{
		"sealfs mou":         {"mount", "mounts"},
		"sealfs mount --for": {"--foreground"},
		"sealfs fsck --j":    {"--json"},
		"sealfs rev":         {"revoke"},
	} {
		got := complete(line)
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("bash completes %q to %q, want %q among them", line, got, w)
			}
		}
	}
	if got := complete("sealfs mount --da"); strings.Contains(got, "--daemon") {
		t.Errorf("bash offers the internal --daemon flag: %q", got)
	}
}

// repoRoot is the repository's top directory (the tests run in tests/).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}
