package tests

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCLIMlockFailureWarnedOnce: when the key's pages cannot be locked in
// memory (no CAP_IPC_LOCK, RLIMIT_MEMLOCK 0), sealfs still works and says
// so, once per process (issue 14: it used to be silent).
func TestCLIMlockFailureWarnedOnce(t *testing.T) {
	for _, tool := range []string{"setpriv", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (util-linux)", tool)
		}
	}
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "mlock-pw")
	rk := e.initVault(pw)
	rkFile := e.secretFile("rk", rk)
	// Two unlocks in one process: passwd opens the vault, then seals.
	for _, args := range [][]string{
		{"fsck", "-q", "--recovery-key-file", rkFile, e.cipher},
		{"passwd", "--password-file", pw, "--new-password-file", pw, e.cipher},
	} {
		cmd := exec.Command("setpriv", append([]string{"--bounding-set", "-ipc_lock", "--inh-caps", "-ipc_lock", "--",
			"prlimit", "--memlock=0:0", "--", sealfsBin}, args...)...)
		cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		e.stderrAll.Write(stderr.Bytes())
		if err != nil {
			t.Fatalf("sealfs %v without mlock: %v\n%s", args[0], err, stderr.String())
		}
		if n := strings.Count(stderr.String(), "could not lock the vault key's memory (mlock)"); n != 1 {
			t.Errorf("sealfs %s: the mlock warning appears %d times, want once:\n%s", args[0], n, stderr.String())
		}
	}
	// With mlock allowed, no warning.
	if r := e.mustRun("fsck", "-q", "--recovery-key-file", rkFile, e.cipher); strings.Contains(r.stderr, "mlock") {
		t.Errorf("warning with mlock allowed:\n%s", r.stderr)
	}
}
