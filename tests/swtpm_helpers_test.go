package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/sealfs/sealfs/tpm"
)

// requireSwtpm skips the test when swtpm is not installed; it is the only
// reason a TPM test may skip.
func requireSwtpm(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not installed (Debian: apt install swtpm swtpm-tools)")
	}
}

// shortDir returns a fresh directory under /tmp: t.TempDir() paths are long
// and a unix socket path must fit in 108 bytes.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "st")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// swtpmServer is a swtpm started by a test, as a user would run it.
type swtpmServer struct {
	dir  string
	spec string // for tpm.Open
	ctrl string // unix ctrl socket, or tcp ctrl address
	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer
}

// startSwtpm runs `swtpm socket` on a fresh state dir (unixio, or tcp when
// tcp is set) and stops it in order at cleanup, checking that it is gone.
func startSwtpm(t testing.TB, tcp bool) *swtpmServer {
	t.Helper()
	requireSwtpm(t)
	return startSwtpmIn(t, shortDir(t), tcp)
}

func startSwtpmIn(t testing.TB, dir string, tcp bool) *swtpmServer {
	t.Helper()
	s := &swtpmServer{dir: dir, done: make(chan struct{})}
	args := []string{"socket", "--tpm2", "--tpmstate", "dir=" + dir,
		"--flags", "not-need-init,startup-clear", "--pid", "file=" + filepath.Join(dir, "pid")}
	if tcp {
		port := freePortPair(t)
		args = append(args, "--server", fmt.Sprintf("type=tcp,port=%d", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d", port+1))
		s.spec = fmt.Sprintf("tcp:127.0.0.1:%d", port)
		s.ctrl = fmt.Sprintf("127.0.0.1:%d", port+1)
	} else {
		sock := filepath.Join(dir, "sock")
		args = append(args, "--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+filepath.Join(dir, "ctrl"))
		s.spec = "unix:" + sock
		s.ctrl = filepath.Join(dir, "ctrl")
	}
	s.cmd = exec.Command("swtpm", args...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, err := s.dialData(); err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("swtpm exited: %s", s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm not ready: %s", s.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *swtpmServer) dialData() (net.Conn, error) {
	if addr, ok := strings.CutPrefix(s.spec, "tcp:"); ok {
		return net.Dial("tcp", addr)
	}
	addr, _ := strings.CutPrefix(s.spec, "unix:")
	return net.Dial("unix", addr)
}

func (s *swtpmServer) dialCtrl() (net.Conn, error) {
	if _, ok := strings.CutPrefix(s.spec, "tcp:"); ok {
		return net.Dial("tcp", s.ctrl)
	}
	return net.Dial("unix", s.ctrl)
}

// stop sends TPM2_Shutdown(CLEAR) (else the next start raises the DA
// counter), then the ctrl channel's CMD_SHUTDOWN, and waits for the exit.
func (s *swtpmServer) stop(t testing.TB) {
	t.Helper()
	select {
	case <-s.done:
		return
	default:
	}
	if c, err := s.dialData(); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		shutdown := []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x45, 0, 0} // TPM2_Shutdown(CLEAR)
		c.Write(shutdown)
		io.ReadFull(c, make([]byte, 10))
		c.Close()
	}
	if c, err := s.dialCtrl(); err == nil {
		c.SetDeadline(time.Now().Add(2 * time.Second))
		binary.Write(c, binary.BigEndian, uint32(3)) // CMD_SHUTDOWN
		io.ReadFull(c, make([]byte, 4))
		c.Close()
	}
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("swtpm on %s ignored CMD_SHUTDOWN", s.dir)
	}
	if pids := swtpmPids(s.dir); len(pids) > 0 {
		t.Errorf("swtpm processes left on %s: %v", s.dir, pids)
	}
}

// assertNoHandles fails the test if transient objects or sessions are still
// loaded in swtpm. Call it after closing every client: swtpm serves one
// connection at a time. Nothing is filtered on the handle's type: swtpm lists
// a loaded policy session (0x03…) under the loaded-session query 0x02.
func (s *swtpmServer) assertNoHandles(t testing.TB) {
	t.Helper()
	conn, err := s.dialData()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := transport.FromReadWriteCloser(conn)
	for _, first := range []uint32{0x80000000, 0x02000000, 0x03000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: first, PropertyCount: 64}.Execute(raw)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs.Handle {
			t.Errorf("handle %#x left loaded in the TPM", uint32(h))
		}
	}
}

// kill simulates a crash of swtpm.
func (s *swtpmServer) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// freePortPair finds P such that P and P+1 are free on 127.0.0.1 (swtpm's
// data and ctrl ports).
func freePortPair(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		l.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// swtpmPids lists live swtpm processes whose command line names dir.
func swtpmPids(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if bytes.Contains(cmdline, []byte("swtpm")) && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// daParams is the dictionary-attack setting a test asks for explicitly:
// swtpm's defaults (3 tries, 1000 s) would make one stray failure slow.
type daParams struct {
	maxTries           uint32
	interval, recovery time.Duration
}

var defaultDA = daParams{maxTries: 5, interval: 1000 * time.Second, recovery: 1000 * time.Second}

// openTPM opens spec, sets DA parameters, clears the DA counter and closes
// the TPM at cleanup.
func openTPM(t testing.TB, spec string, da daParams) *tpm.TPM {
	t.Helper()
	tp, err := tpm.Open(spec, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%q): %v", spec, err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := tp.SetDictionaryAttackParams(da.maxTries, da.interval, da.recovery, nil); err != nil {
		t.Fatal(err)
	}
	if err := tp.ResetLockout(nil); err != nil {
		t.Fatal(err)
	}
	return tp
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
