package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ptyRun is sealfs running on a terminal of its own.
type ptyRun struct {
	cmd  *exec.Cmd
	m, s *os.File // master (the test types here), slave (kept to read its settings)
	r    *ptyReader
	done chan error
}

// startPTY runs sealfs with the TPM spec on a new pseudo-terminal, as its
// controlling terminal; extra files are inherited from fd 3 on.
func (e *cliEnv) startPTY(spec string, extra []*os.File, args ...string) *ptyRun {
	e.t.Helper()
	m, s := openPTY(e.t)
	cmd := exec.Command(sealfsBin, append([]string{"--tpm", spec}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	m = pollable(e.t, m)
	p := &ptyRun{cmd: cmd, m: m, s: s, r: newPTYReader(m), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	e.t.Cleanup(func() {
		cmd.Process.Kill()
		m.Close()
		s.Close()
	})
	return p
}

// pollable returns m as a file Go's poller serves: openPTY's ioctls put it
// in blocking mode, and then Close cannot interrupt a Read in progress, so
// the master would stay open (and the terminal never hang up) while the
// reader waits for output that no longer comes.
func pollable(t *testing.T, m *os.File) *os.File {
	t.Helper()
	fd, err := unix.Dup(int(m.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	m.Close()
	return os.NewFile(uintptr(fd), "/dev/ptmx")
}

// wait returns the exit status and everything the terminal showed.
func (p *ptyRun) wait(t *testing.T) (int, string) {
	t.Helper()
	var err error
	select {
	case err = <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("sealfs did not exit; terminal:\n%s", p.r.buf.String())
	}
	for quiet := false; !quiet; {
		select {
		case b := <-p.r.ch:
			p.r.buf.Write(b)
		case <-time.After(200 * time.Millisecond):
			quiet = true
		}
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, p.r.buf.String()
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), p.r.buf.String()
	}
	t.Fatalf("sealfs ended by %v, not by exiting; terminal:\n%s", err, p.r.buf.String())
	return 0, ""
}

// echoOn reports whether the terminal echoes again.
func (p *ptyRun) echoOn(t *testing.T) bool {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(p.s.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio.Lflag&unix.ECHO != 0
}

func waitNoSwtpm(t *testing.T, dir string) {
	t.Helper()
	var pids []int
	if !waitFor(5*time.Second, func() bool { pids = swtpmPids(dir); return len(pids) == 0 }) {
		t.Fatalf("a software TPM still runs on %s: %v", dir, pids)
	}
}

// TestCLIInterruptedPrompts: SIGINT, SIGTERM or SIGHUP at a prompt puts the
// terminal back, takes back a vault init had not finished (header, NV
// index, this machine's pins, the folder it made), stops the software TPM
// the command started, and exits 128+signal.
func TestCLIInterruptedPrompts(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	sw := filepath.Join(e.base, "swtpm")
	spec := "swtpm:" + sw
	pw := e.secretFile("pw", "interrupted-prompts-pw")

	// ^C typed at init's password prompt.
	p := e.startPTY(spec, nil, "init", e.cipher)
	p.r.expect(t, regexp.MustCompile(`New vault password: $`))
	p.m.Write([]byte{0x03})
	code, out := p.wait(t)
	if code != 130 || !strings.Contains(out, "sealfs: interrupted by SIGINT") {
		t.Fatalf("^C at the password prompt: exit %d, want 130:\n%s", code, out)
	}
	if !p.echoOn(t) {
		t.Error("the terminal's echo is still off after ^C at the password prompt")
	}
	if _, err := os.Stat(e.cipher); !os.IsNotExist(err) {
		t.Errorf("the vault folder exists after an init interrupted before any password: %v", err)
	}
	waitNoSwtpm(t, sw)

	// SIGTERM at the recovery key's confirmation: the vault existed for a
	// moment; every trace of it goes.
	p = e.startPTY(spec, nil, "init", "--password-file", pw, e.cipher)
	p.r.expect(t, regexp.MustCompile(`type group \d of the recovery key: $`))
	e.secrets = append(e.secrets, recoveryKeyRE.FindString(strings.ReplaceAll(p.r.buf.String(), "\r\n", "\n")))
	p.cmd.Process.Signal(syscall.SIGTERM)
	code, out = p.wait(t)
	if code != 143 || !strings.Contains(out, "interrupted by SIGTERM; the vault was not created") {
		t.Fatalf("SIGTERM at the confirmation: exit %d, want 143:\n%s", code, out)
	}
	if _, err := os.Stat(e.cipher); !os.IsNotExist(err) {
		t.Errorf("the folder init made is still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.state, "sealfs", "pins.json")); err == nil && bytes.Contains(b, []byte(e.cipher)) {
		t.Errorf("this machine still pins a slot of the vault that was taken back:\n%s", b)
	}
	waitNoSwtpm(t, sw)
	srv := startSwtpmIn(t, sw, false)
	if nv := srv.nvIndexes(t); len(nv) != 0 {
		t.Errorf("NV indexes %#x left defined by the interrupted init", nv)
	}
	srv.stop(t)

	// The terminal hangs up at mount's password prompt.
	e.mustRunSpec(spec, "init", "--password-file", pw, "--no-confirm", e.cipher)
	p = e.startPTY(spec, nil, "mount", e.cipher, e.mnt)
	p.r.expect(t, regexp.MustCompile(`Password for .*: $`))
	p.m.Close()
	if code, out = p.wait(t); code != 129 {
		t.Fatalf("hang-up at the password prompt: exit %d, want 129:\n%s", code, out)
	}
	waitNoSwtpm(t, sw)
	if isMounted(e.mnt) {
		t.Fatal("mounted after a hang-up at the password prompt")
	}
}

// mustRunSpec is mustRun with another TPM.
func (e *cliEnv) mustRunSpec(spec string, args ...string) cliResult {
	e.t.Helper()
	r := e.runWith(spec, nil, args...)
	if r.code != 0 {
		e.t.Fatalf("sealfs %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r
}

// TestCLISoftwareTPMShared: a second command waits for the software TPM
// another one holds, saying so, and then works; a command killed outright
// takes its swtpm along, and that swtpm never held the caller's
// descriptors (a caller waiting for its pipe's end hung before).
func TestCLISoftwareTPMShared(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	sw := filepath.Join(e.base, "swtpm")
	spec := "swtpm:" + sw
	const secret = "shared-software-tpm"
	pw := e.secretFile("pw", secret)
	e.secrets = append(e.secrets, recoveryKeyRE.FindString(e.mustRunSpec(spec, "init", "--password-file", pw, "--no-confirm", e.cipher).stdout))

	a := e.startPTY(spec, nil, "fsck", e.cipher)
	a.r.expect(t, regexp.MustCompile(`Password for .*: $`))
	b := exec.Command(sealfsBin, "status", "--tpm", spec, e.cipher)
	b.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	var bout, berr syncBuffer
	b.Stdout, b.Stderr = &bout, &berr
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	bdone := make(chan error, 1)
	go func() { bdone <- b.Wait() }()
	if !waitFor(15*time.Second, func() bool { return strings.Contains(berr.String(), "waiting for the software TPM") }) {
		t.Fatalf("the second command does not say it waits: %q", berr.String())
	}
	if !strings.Contains(berr.String(), "sealfs fsck") {
		t.Errorf("the waiting line does not name the command it waits for: %q", berr.String())
	}
	fmt.Fprintln(a.m, secret)
	if code, out := a.wait(t); code != 0 {
		t.Fatalf("fsck: exit %d:\n%s", code, out)
	}
	select {
	case err := <-bdone:
		if err != nil || !strings.Contains(bout.String(), "this TPM") {
			t.Fatalf("status after waiting: %v\n%s%s", err, bout.String(), berr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiting status never finished")
	}

	pr, pwr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	c := e.startPTY(spec, []*os.File{pwr}, "fsck", e.cipher)
	pwr.Close()
	c.r.expect(t, regexp.MustCompile(`Password for .*: $`))
	if len(swtpmPids(sw)) == 0 {
		t.Fatal("no software TPM runs while fsck waits for the password")
	}
	c.cmd.Process.Kill()
	<-c.done
	pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := pr.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("the caller's pipe is still open after sealfs died (%d, %v): its swtpm inherited it", n, err)
	}
	waitNoSwtpm(t, sw)
	e.mustRunSpec(spec, "fsck", "-q", "--password-file", pw, e.cipher)
}

// syncBuffer is a bytes.Buffer a command writes to while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
