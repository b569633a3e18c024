package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSystemdUnits: the units in dist/systemd pass `systemd-analyze
// verify` (every warning counts), with the test binary standing in for
// /usr/local/bin/sealfs and the generated sealfs(1) on MANPATH, which
// verify looks up for Documentation=.
func TestSystemdUnits(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (Debian: systemd): the units are not verified")
	}
	repo := repoRoot(t)
	dir := t.TempDir()
	man := filepath.Join(dir, "man", "man1")
	os.MkdirAll(man, 0o755)
	page, err := os.ReadFile(filepath.Join(repo, "dist", "man", "sealfs.1"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(man, "sealfs.1"), page, 0o644)
	copyUnit := func(src, dst string) string {
		b, err := os.ReadFile(filepath.Join(repo, "dist", "systemd", src))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/sealfs"), []byte(sealfsBin))
		p := filepath.Join(dir, dst)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	verify := func(user bool, units ...string) {
		args := []string{"verify"}
		if user {
			args = append(args, "--user")
		}
		if _, err := exec.LookPath("man"); err != nil {
			args = append(args, "--man=no")
			t.Log("man not installed: Documentation= is not checked")
		}
		cmd := exec.Command("systemd-analyze", append(args, units...)...)
		rt := filepath.Join(dir, "runtime")
		os.MkdirAll(rt, 0o700)
		// A user manager needs a runtime directory even to verify.
		cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(dir, "man")+":", "XDG_RUNTIME_DIR="+rt)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze %v: %v\n%s", args, err, out)
		}
	}
	system := []string{copyUnit("sealfs@.service", "system/sealfs@backup.service")}
	if _, err := os.Stat("/usr/bin/restic"); err == nil {
		system = append(system, copyUnit("examples/restic-backup.service", "system/restic-backup.service"),
			copyUnit("examples/restic-backup.timer", "system/restic-backup.timer"))
	} else {
		t.Log("restic not installed: the example backup units are not verified")
	}
	verify(false, system...)
	verify(true, copyUnit("user/sealfs@.service", "user/sealfs@backup.service"))
}

// TestCLIForegroundUnderSystemd runs the units' ExecStart as systemd would:
// `mount --foreground -o ${OPTIONS}` with an empty OPTIONS, the password as
// the credential sealfs.password, $NOTIFY_SOCKET and $JOURNAL_STREAM set.
// READY=1 comes once the mount is usable, log lines carry syslog priority
// prefixes for the journal (and no time stamps), SIGTERM (systemctl stop)
// unmounts, says STOPPING=1 and exits 0.
func TestCLIForegroundUnderSystemd(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "systemd-credential-pw")
	e.initVault(pw)
	creds := filepath.Join(e.base, "creds")
	os.Mkdir(creds, 0o700)
	if err := os.Rename(pw, filepath.Join(creds, "sealfs.password")); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(e.base, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	notes := make(chan string, 8)
	go func() {
		b := make([]byte, 4096)
		for {
			n, _, err := l.ReadFromUnix(b)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(b[:n])
		}
	}()
	journalR, journalW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer journalR.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(journalW.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sealfsBin, "mount", "--foreground", "-o", "", e.cipher, e.mnt)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state,
		"CREDENTIALS_DIRECTORY="+creds, "NOTIFY_SOCKET="+sock, fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	cmd.Stdout, cmd.Stderr = journalW, journalW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	journalW.Close()
	var journal bytes.Buffer
	logDone := make(chan struct{})
	go func() { defer close(logDone); journal.ReadFrom(journalR) }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	select {
	case n := <-notes:
		if !strings.HasPrefix(n, "READY=1\n") || !strings.Contains(n, "STATUS="+e.cipher+" mounted at "+e.mnt) {
			t.Fatalf("first notification %q, want READY=1 and a status", n)
		}
		if !isMounted(e.mnt) {
			t.Fatal("READY=1 before the mount was there")
		}
	case err := <-done:
		<-logDone
		t.Fatalf("the foreground mount exited (%v) before READY=1:\n%s", err, journal.String())
	case <-time.After(30 * time.Second):
		t.Fatal("no READY=1 within 30 s")
	}
	mustWrite(t, filepath.Join(e.mnt, "f"), []byte("x"))
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("SIGTERM did not stop the foreground mount")
	}
	<-logDone
	e.stderrAll.Write(journal.Bytes())
	if n := <-notes; n != "STOPPING=1" {
		t.Errorf("second notification %q, want STOPPING=1", n)
	}
	if isMounted(e.mnt) {
		t.Error("still mounted after SIGTERM")
	}
	sc := bufio.NewScanner(bytes.NewReader(journal.Bytes()))
	lines := 0
	for sc.Scan() {
		lines++
		line := sc.Text()
		if len(line) < 3 || line[0] != '<' || line[2] != '>' || strings.Contains(line, "time=") {
			t.Errorf("not a journal line (<N>message, no time stamp): %q", line)
		}
	}
	if lines == 0 || !strings.Contains(journal.String(), "<6>mounted") || !strings.Contains(journal.String(), "<6>unmounted; keys wiped") {
		t.Errorf("the journal lacks the mount's lines:\n%s", journal.String())
	}
}

// TestCLIBackgroundMountLogsToJournal: a background mount started with
// the journal as stderr (a mount unit, a service's ExecStartPre) hands the
// journal to its daemon instead of a log file, and says so.
func TestCLIBackgroundMountLogsToJournal(t *testing.T) {
	requireFUSE(t)
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "journal-daemon-pw")
	e.initVault(pw)
	// Any file will do as the stream: what counts is that stderr's device
	// and inode are the ones $JOURNAL_STREAM names.
	stream, err := os.Create(filepath.Join(e.base, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(stream.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sealfsBin, "mount", "--password-file", pw, e.cipher, e.mnt)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state,
		fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stream
	if err := cmd.Run(); err != nil {
		t.Fatalf("mount: %v", err)
	}
	if !strings.Contains(out.String(), "; log: the journal") {
		t.Errorf("the mount does not say its log is the journal: %q", out.String())
	}
	e.mustRun("unmount", e.mnt)
	waitNoSealfs(e.base, 5*time.Second)
	b, _ := os.ReadFile(stream.Name())
	e.stderrAll.Write(b)
	if !strings.Contains(string(b), "<6>mounted cipher_dir=") || !strings.Contains(string(b), "<6>unmounted; keys wiped") {
		t.Errorf("the daemon did not log to the journal stream:\n%s", b)
	}
	if logs, _ := filepath.Glob(filepath.Join(e.runtime, "sealfs", "*.log")); len(logs) > 0 {
		t.Errorf("a log file was written besides the journal: %v", logs)
	}
}
