package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIMountUnmount: background mount returns once ready; data round
// trips through the cipher dir as ciphertext only; a busy mount refuses to
// lock; no secret shows in any process's argv.
func TestCLIMountUnmount(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "mount-password-7f3a")
	rk := e.initVault(pw)

	start := time.Now()
	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	t.Logf("background mount ready in %v", time.Since(start))
	// Ready means ready: no polling before the first use.
	if !isMounted(e.mnt) {
		t.Fatal("mount returned before the mount was there")
	}
	wantExit(t, e.run("mount", "--password-file", pw, e.cipher, e.mnt), 1, "already mounted")
	// The same vault at a second mountpoint: refused before any password
	// is tried (a wrong one would say so), naming the existing mount.
	mnt2 := filepath.Join(e.base, "mnt2")
	if err := os.Mkdir(mnt2, 0o755); err != nil {
		t.Fatal(err)
	}
	wrong := e.secretFile("wrong", "not-the-password")
	wantExit(t, e.run("mount", "--password-file", wrong, e.cipher, mnt2), 1, "already mounted at "+e.mnt)
	if isMounted(mnt2) {
		t.Fatal("the vault was mounted a second time")
	}
	for _, s := range []string{"mount-password-7f3a", rk} {
		if strings.Contains(allCmdlines(), s) {
			t.Fatalf("secret %q visible in a process's argv", s)
		}
	}
	daemons := sealfsPids(e.mnt)
	if len(daemons) != 1 {
		t.Fatalf("want one mount daemon, found %v", daemons)
	}
	if env, err := os.ReadFile("/proc/" + strconv.Itoa(daemons[0]) + "/environ"); err == nil && bytes.Contains(env, []byte("mount-password-7f3a")) {
		t.Fatal("the password is in the daemon's environment")
	}

	const name, content = "plaintext-name-marker.txt", "plaintext content marker 8c1e"
	mustWrite(t, filepath.Join(e.mnt, name), []byte(content))
	if err := os.Mkdir(filepath.Join(e.mnt, "dir-marker"), 0o755); err != nil {
		t.Fatal(err)
	}

	// Busy: an open file keeps the vault mounted, with a clear message.
	f, err := os.Open(filepath.Join(e.mnt, name))
	if err != nil {
		t.Fatal(err)
	}
	wantExit(t, e.run("unmount", e.mnt), 1, "is busy")
	if !isMounted(e.mnt) {
		t.Fatal("a refused unmount unmounted")
	}
	f.Close()
	// The kernel sends RELEASE asynchronously after close.
	var r cliResult
	if !waitFor(5*time.Second, func() bool { r = e.run("lock", e.mnt); return r.code == 0 }) {
		t.Fatalf("lock after close: %s", r.stderr)
	}
	if isMounted(e.mnt) {
		t.Fatal("still mounted after lock")
	}
	if pids := waitNoSealfs(e.base, 5*time.Second); len(pids) > 0 {
		t.Fatalf("daemon still running after unmount: %v", pids)
	}

	// Only ciphertext in the cloud folder.
	filepath.Walk(e.cipher, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []string{"plaintext-name-marker", "dir-marker"} {
			if strings.Contains(p, m) {
				t.Errorf("plaintext name in the cipher dir: %s", p)
			}
		}
		if !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("plaintext content marker")) {
				t.Errorf("plaintext content in %s", p)
			}
		}
		return nil
	})

	e.mustRun("mount", "--ro", "--password-file", pw, e.cipher, e.mnt)
	if got := string(mustRead(t, filepath.Join(e.mnt, name))); got != content {
		t.Fatalf("after remount the file reads %q", got)
	}
	if err := os.WriteFile(filepath.Join(e.mnt, "new"), nil, 0o644); err == nil {
		t.Error("wrote to a --ro mount")
	}
	e.mustRun("unmount", e.mnt)
	wantExit(t, e.run("unmount", e.mnt), 1, "not mounted")
}

// TestCLIMountSignalsAndIdle: SIGTERM to the daemon unmounts cleanly;
// --idle locks after inactivity; -f serves in the foreground until SIGINT.
func TestCLIMountSignalsAndIdle(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "signals-pw")
	e.initVault(pw)

	e.mustRun("mount", "--password-file", pw, e.cipher, e.mnt)
	mustWrite(t, filepath.Join(e.mnt, "a"), []byte("kept"))
	pids := sealfsPids(e.mnt)
	if len(pids) != 1 {
		t.Fatalf("daemons: %v", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool { return !isMounted(e.mnt) && len(sealfsPids(e.base)) == 0 }) {
		t.Fatal("SIGTERM did not unmount and stop the daemon")
	}

	start := time.Now()
	e.mustRun("mount", "--idle", "1s", "--password-file", pw, e.cipher, e.mnt)
	if got := string(mustRead(t, filepath.Join(e.mnt, "a"))); got != "kept" {
		t.Fatalf("file reads %q", got)
	}
	if !waitFor(15*time.Second, func() bool { return !isMounted(e.mnt) }) {
		t.Fatal("--idle 1s did not lock")
	}
	t.Logf("idle lock after %v", time.Since(start))
	if pids := waitNoSealfs(e.base, 5*time.Second); len(pids) > 0 {
		t.Fatalf("daemon still running after idle lock: %v", pids)
	}

	// Foreground: logs on stderr, SIGINT unmounts and exits 0.
	cmd, stderr := e.startForeground(pw)
	if !waitFor(10*time.Second, func() bool { return isMounted(e.mnt) }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("foreground mount never appeared: %s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	e.stderrAll.Write(stderr.Bytes())
	if err != nil {
		t.Fatalf("foreground mount exited with %v: %s", err, stderr.String())
	}
	if isMounted(e.mnt) || !strings.Contains(stderr.String(), "keys wiped") {
		t.Fatalf("foreground SIGINT: mounted=%v stderr=%s", isMounted(e.mnt), stderr.String())
	}
}

// TestCLIPasswordSources: --extpass and $SEALFS_PASSWORD unlock, and the
// variable does not reach the mount daemon.
func TestCLIPasswordSources(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "env-and-extpass-pw")
	e.initVault(pw)

	e.mustRun("mount", "--extpass", "cat "+pw, e.cipher, e.mnt)
	e.mustRun("unmount", e.mnt)

	r := e.runWith(e.tpm.spec, []string{"SEALFS_PASSWORD=env-and-extpass-pw"}, "mount", e.cipher, e.mnt)
	wantExit(t, r, 0, "")
	pids := sealfsPids(e.mnt)
	if len(pids) != 1 {
		t.Fatalf("daemons: %v", pids)
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pids[0]) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte("SEALFS_PASSWORD")) {
		t.Error("$SEALFS_PASSWORD was passed on to the mount daemon")
	}
	e.mustRun("unmount", e.mnt)
	wantExit(t, e.run("mount", "--extpass", "exit 3", e.cipher, e.mnt), 1, "--extpass command failed")

	// A foreground mount lives as long as the mount: the variable's value
	// is wiped from the environment block /proc/PID/environ shows (root
	// reads it despite non-dumpable), not only dropped from Go's copy.
	cmd := exec.Command(sealfsBin, "mount", "-f", e.cipher, e.mnt)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state,
		"SEALFS_PASSWORD=env-and-extpass-pw")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool { return isMounted(e.mnt) }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("foreground mount with $SEALFS_PASSWORD: %s", stderr.String())
	}
	env, err = os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(env, []byte("env-and-extpass-pw")) || !bytes.Contains(env, []byte("SEALFS_PASSWORD=")) {
		t.Errorf("the foreground mount's /proc/PID/environ: password still there, or the variable not found at all")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("foreground mount exit: %v\n%s", err, stderr.String())
	}
	e.stderrAll.WriteString(stderr.String())
}

// TestCLIMountSignalDuringSetup signals a foreground mount the moment its
// mount appears, while go-fuse is still probing the new mount from the
// daemon's own main thread (an OPEN and a POLL of a magic file). A signal
// there used to kill the daemon by default before its handler was set up:
// a go-fuse reader had taken that OPEN, the main thread waited for the answer
// in the kernel where no signal reaches it, so the process could never
// finish dying and a dead mount stayed behind. Every daemon must now unmount
// and exit 0.
func TestCLIMountSignalDuringSetup(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "setup-signal-pw")
	e.initVault(pw)
	for i := range 8 {
		sig := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}[i%2]
		cmd, stderr := e.startForeground(pw)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// The window is a few milliseconds: poll the mount table tightly.
		deadline := time.Now().Add(20 * time.Second)
		for !isMounted(e.mnt) {
			select {
			case err := <-done:
				t.Fatalf("round %d: the mount exited before mounting (%v): %s", i, err, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				<-done
				t.Fatalf("round %d: the mount never appeared: %s", i, stderr.String())
			}
			time.Sleep(100 * time.Microsecond)
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: %v during setup: the mount exited with %v: %s", i, sig, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			abortFUSE(t, e.mnt) // frees the stuck daemon and the dead mount
			<-done
			t.Fatalf("round %d: %v during setup: the daemon did not exit: %s", i, sig, stderr.String())
		}
		e.stderrAll.Write(stderr.Bytes())
		if isMounted(e.mnt) || !strings.Contains(stderr.String(), "keys wiped") {
			t.Fatalf("round %d: %v during setup: mounted=%v stderr=%s", i, sig, isMounted(e.mnt), stderr.String())
		}
	}
}

// startForeground starts `sealfs mount -f` of the env's vault, its stderr
// (the daemon's log) collected in the returned buffer.
func (e *cliEnv) startForeground(pw string) (*exec.Cmd, *bytes.Buffer) {
	e.t.Helper()
	cmd := exec.Command(sealfsBin, "mount", "-f", "--password-file", pw, e.cipher, e.mnt)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return cmd, stderr
}

// abortFUSE aborts the FUSE connection mounted at path and detaches the
// mount, without touching the mount itself (a stat of a mount whose daemon
// is stuck blocks too).
func abortFUSE(t *testing.T, path string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/fs/fuse/connections/"); err == nil {
		// fusectl may not be mounted (containers, minimal systems).
		syscall.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
	}
	for line := range strings.SplitSeq(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			_, minor, _ := strings.Cut(f[2], ":")
			if err := os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0); err != nil {
				t.Logf("aborting the FUSE connection of %s: %v", path, err)
			}
		}
	}
	if err := syscall.Unmount(path, syscall.MNT_DETACH); err != nil {
		t.Logf("detaching %s: %v", path, err)
	}
}
