package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal pair (no third-party pty package: the
// three ioctls are all it takes on Linux).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// ptyReader accumulates what the program writes to the terminal.
type ptyReader struct {
	buf  bytes.Buffer
	ch   chan []byte
	done chan struct{}
}

func newPTYReader(m *os.File) *ptyReader {
	r := &ptyReader{ch: make(chan []byte, 64), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		b := make([]byte, 4096)
		for {
			n, err := m.Read(b)
			if n > 0 {
				r.ch <- bytes.Clone(b[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *ptyReader) expect(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		if m := re.FindStringSubmatch(r.buf.String()); m != nil {
			return m
		}
		select {
		case b := <-r.ch:
			r.buf.Write(b)
		case <-deadline:
			t.Fatalf("terminal never showed %q; got:\n%s", re, r.buf.String())
		}
	}
}

// TestCLIInitInteractive drives `sealfs init` on a terminal: password twice
// without echo, recovery key with QR code, one group typed back (a wrong
// answer is refused first).
func TestCLIInitInteractive(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	m, s := openPTY(t)
	defer m.Close()
	cmd := exec.Command(sealfsBin, "init", e.cipher)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r := newPTYReader(m)
	const pw = "typed-on-a-tty"
	r.expect(t, regexp.MustCompile(`New vault password: $`))
	fmt.Fprintf(m, "%s\n", pw)
	r.expect(t, regexp.MustCompile(`Repeat new vault password: $`))
	fmt.Fprintf(m, "%s\n", pw)
	g := r.expect(t, regexp.MustCompile(`type group (\d) of the recovery key: $`))
	key := recoveryKeyRE.FindString(strings.ReplaceAll(r.buf.String(), "\r\n", "\n"))
	if key == "" {
		t.Fatalf("no recovery key shown:\n%s", r.buf.String())
	}
	if !strings.Contains(r.buf.String(), "▀") && !strings.Contains(r.buf.String(), "▄") {
		t.Error("no QR code on the terminal")
	}
	fmt.Fprintln(m, "000000000")
	r.expect(t, regexp.MustCompile(`does not match`))
	n, _ := strconv.Atoi(g[1])
	fmt.Fprintln(m, strings.Split(key, "-")[n-1])
	r.expect(t, regexp.MustCompile(`Recovery key confirmed`))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("init: %v\n%s", err, r.buf.String())
	}
	if strings.Contains(r.buf.String(), pw) {
		t.Error("the password was echoed")
	}
	e.secrets = append(e.secrets, pw, key)
	pwFile := e.secretFile("pw", pw)
	e.mustRun("passwd", "--password-file", pwFile, "--new-password-file", pwFile, e.cipher)
}
