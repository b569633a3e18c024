package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// sealfsBin is the sealfs binary built once for the CLI tests.
var sealfsBin string

func TestMain(m *testing.M) {
	if os.Getenv(ownerHelperEnv) != "" {
		os.Exit(ownerMountHelper())
	}
	dir, err := os.MkdirTemp("", "sealfs-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sealfsBin = filepath.Join(dir, "sealfs")
	out, err := exec.Command("go", "build", "-o", sealfsBin, "github.com/sealfs/sealfs/cmd/sealfs").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building sealfs: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recoveryKeyRE matches the recovery key line `sealfs init` prints.
var recoveryKeyRE = regexp.MustCompile(`(?m)^[0-9a-f]{9}(-[0-9a-f]{9}){7}$`)

// cliEnv is one test's world: a swtpm of its own, a cipher dir, a private
// runtime dir for mount daemons, and every stderr the binary wrote, so the
// test can check that no secret ever appeared there.
type cliEnv struct {
	t        *testing.T
	tpm      *swtpmServer
	base     string
	cipher   string
	mnt      string
	runtime  string
	state    string // $XDG_STATE_HOME: this machine's TPM slot pins
	extraEnv []string

	stderrAll bytes.Buffer
	secrets   []string
}

func newCLIEnv(t *testing.T, da daParams) *cliEnv {
	t.Helper()
	requireSwtpm(t)
	e := &cliEnv{t: t, base: shortDir(t)}
	e.tpm = startSwtpm(t, false)
	setDA(t, e.tpm.spec, da)
	e.cipher = filepath.Join(e.base, "cipher")
	e.mnt = filepath.Join(e.base, "mnt")
	e.runtime = filepath.Join(e.base, "run")
	e.state = filepath.Join(e.base, "state")
	for _, d := range []string{e.mnt, e.runtime} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after swtpm's stop, so it runs before it.
	t.Cleanup(e.cleanup)
	return e
}

// setDA sets the dictionary-attack parameters and clears the counter, then
// disconnects: swtpm serves one client, and the binary needs it next.
func setDA(t *testing.T, spec string, da daParams) {
	t.Helper()
	tp, err := tpm.Open(spec, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if err := tp.SetDictionaryAttackParams(da.maxTries, da.interval, da.recovery, nil); err != nil {
		t.Fatal(err)
	}
	if err := tp.ResetLockout(nil); err != nil {
		t.Fatal(err)
	}
}

type cliResult struct {
	stdout, stderr string
	code           int
}

// run runs sealfs with this env's TPM and runtime dir.
func (e *cliEnv) run(args ...string) cliResult {
	e.t.Helper()
	return e.runWith(e.tpm.spec, nil, args...)
}

func (e *cliEnv) runWith(spec string, env []string, args ...string) cliResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sealfsBin, args...)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	cmd.Env = append(append(cmd.Env, e.extraEnv...), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// A background mount's daemon must not hold our pipes: if it did, Wait
	// would block until the daemon exits. WaitDelay turns that into a
	// failure instead of a hang.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	e.stderrAll.WriteString(r.stderr)
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("sealfs %v: %v", args, err)
	}
	e.t.Logf("sealfs %s → %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// mustRun runs sealfs and fails the test unless it exits 0.
func (e *cliEnv) mustRun(args ...string) cliResult {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("sealfs %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r
}

// secretFile writes a secret to a 0600 file and remembers it for the leak
// checks.
func (e *cliEnv) secretFile(name, secret string) string {
	e.t.Helper()
	p := filepath.Join(e.base, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	e.secrets = append(e.secrets, secret)
	return p
}

// initVault runs a non-interactive init and returns the recovery key.
func (e *cliEnv) initVault(pwFile string, extra ...string) string {
	e.t.Helper()
	args := append([]string{"init", "--password-file", pwFile, "--no-confirm"}, extra...)
	r := e.mustRun(append(args, e.cipher)...)
	rk := recoveryKeyRE.FindString(r.stdout)
	if rk == "" {
		e.t.Fatalf("no recovery key in init's output:\n%s", r.stdout)
	}
	if _, err := crypto.ParseRecoveryKey(rk); err != nil {
		e.t.Fatalf("init printed an invalid recovery key: %v", err)
	}
	e.secrets = append(e.secrets, rk)
	return rk
}

func (e *cliEnv) vaultBytes() []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.cipher, crypto.HeaderFileName))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// cleanup unmounts whatever a failed test left, then checks that no
// sealfs process and no secret was left behind.
func (e *cliEnv) cleanup() {
	t := e.t
	if isMounted(e.mnt) {
		t.Errorf("%s still mounted at the end of the test", e.mnt)
		if r := e.run("unmount", e.mnt); r.code != 0 {
			unix.Unmount(e.mnt, unix.MNT_DETACH)
		}
	}
	if pids := waitNoSealfs(e.base, 5*time.Second); len(pids) > 0 {
		t.Errorf("sealfs processes left: %v", pids)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(e.runtime, "sealfs", "*.log"))
	all := e.stderrAll.String()
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		all += string(b)
	}
	for _, s := range e.secrets {
		if strings.Contains(all, s) {
			t.Errorf("secret %q appeared in stderr or a daemon log", s)
		}
	}
}

// isMounted reports whether a FUSE file system is mounted at path.
func isMounted(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == path {
			for i, f := range fields {
				if f == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
					return true
				}
			}
		}
	}
	return false
}

// waitFor polls cond until it holds or the limit passes.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// sealfsPids lists live (non-zombie) processes of the test binary whose
// command line mentions dir.
func sealfsPids(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmdline, []byte(sealfsBin)) || !bytes.Contains(cmdline, []byte(dir)) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Field 3 is the state; an exited daemon waiting for its reaper is Z.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func waitNoSealfs(dir string, limit time.Duration) []int {
	var pids []int
	waitFor(limit, func() bool { pids = sealfsPids(dir); return len(pids) == 0 })
	return pids
}

// allCmdlines returns every process's argv, for the "no secret in ps" check.
func allCmdlines() string {
	ents, _ := os.ReadDir("/proc")
	var b strings.Builder
	for _, e := range ents {
		if c, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil {
			b.Write(bytes.ReplaceAll(c, []byte{0}, []byte{' '}))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func wantExit(t *testing.T, r cliResult, code int, substr string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d; stderr: %s", r.code, code, r.stderr)
	}
	if substr != "" && !strings.Contains(r.stderr, substr) {
		t.Fatalf("stderr %q lacks %q", r.stderr, substr)
	}
}
