package tests

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealfs/sealfs/crypto"
	sealfs "github.com/sealfs/sealfs/fs"
)

// requireFUSE skips unless the test can mount (root and /dev/fuse): the one
// reason a FUSE test may skip.
func requireFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("FUSE mount tests need root (DirectMount, other-uid checks)")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("/dev/fuse missing")
	}
}

// logBuf is a goroutine-safe log sink so tests can assert on warnings.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mountOpts tweak newMount.
type mountOpts struct {
	readOnly, allowOther bool
	idRecord             string
}

// testMount is a vault mounted on temp dirs, unmounted by t.Cleanup even
// when the test fails (lazily, if something inside is still busy).
type testMount struct {
	t      testing.TB
	cipher string
	mnt    string
	keys   *crypto.Keys
	opts   mountOpts
	logs   *logBuf
	srv    *sealfs.Server
}

func newMount(t testing.TB, o mountOpts) *testMount {
	t.Helper()
	requireFUSE(t)
	mk, err := crypto.NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := crypto.DeriveKeys(mk)
	mk.Wipe()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	m := &testMount{t: t, cipher: filepath.Join(base, "cipher"), mnt: filepath.Join(base, "mnt"),
		keys: keys, opts: o, logs: &logBuf{}}
	for _, d := range []string{m.cipher, m.mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		m.forceUnmount()
		keys.Wipe()
		if t.Failed() {
			logs := m.logs.String()
			if len(logs) > 8000 {
				logs = "…" + logs[len(logs)-8000:]
			}
			t.Logf("mount log:\n%s", logs)
		}
	})
	m.mount()
	return m
}

func (m *testMount) mount() {
	m.t.Helper()
	srv, err := sealfs.Mount(m.mnt, sealfs.Options{
		CipherDir:  m.cipher,
		Keys:       m.keys,
		Log:        slog.New(slog.NewTextHandler(m.logSink(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		ReadOnly:   m.opts.readOnly,
		AllowOther: m.opts.allowOther,
		IDRecord:   m.opts.idRecord,
		Debug:      os.Getenv("SEALFS_FUSE_DEBUG") != "",
	})
	if err != nil {
		m.t.Fatal(err)
	}
	m.srv = srv
}

// logSink is the log buffer, plus the file SEALFS_TEST_LOG names if set.
func (m *testMount) logSink() io.Writer {
	if p := os.Getenv("SEALFS_TEST_LOG"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			m.t.Cleanup(func() { f.Close() })
			return io.MultiWriter(m.logs, f)
		}
	}
	return m.logs
}

// unmount unmounts cleanly and fails the test if it cannot.
func (m *testMount) unmount() {
	m.t.Helper()
	if m.srv == nil {
		return
	}
	if err := m.srv.Unmount(); err != nil {
		m.t.Fatalf("unmount: %v", err)
	}
	m.srv.Wait()
	m.srv = nil
}

func (m *testMount) remount(o mountOpts) {
	m.t.Helper()
	m.unmount()
	m.opts = o
	m.mount()
}

// forceUnmount never leaves a mount behind: a clean unmount, else a lazy
// detach so the temp dirs can go.
func (m *testMount) forceUnmount() {
	if m.srv == nil {
		return
	}
	if err := m.srv.Unmount(); err != nil {
		m.t.Logf("clean unmount failed (%v); detaching", err)
		if err := unix.Unmount(m.mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			m.t.Errorf("detach %s: %v", m.mnt, err)
		}
		done := make(chan struct{})
		go func() { m.srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			m.t.Errorf("server for %s did not stop", m.mnt)
		}
	} else {
		m.srv.Wait()
	}
	m.srv = nil
}

// p joins path elements under the mount point.
func (m *testMount) p(elem ...string) string {
	return filepath.Join(append([]string{m.mnt}, elem...)...)
}

// cipherFiles lists every path under the cipher dir (relative, sorted by walk).
// cipherOf returns the cipher path of the plaintext entry name (relative to
// the mount), found by its inode number, which the mount passes through.
func (m *testMount) cipherOf(name string) string {
	m.t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(m.p(name), &st); err != nil {
		m.t.Fatal(err)
	}
	for _, rel := range m.cipherFiles() {
		var cst syscall.Stat_t
		if syscall.Lstat(m.cipher+"/"+rel, &cst) == nil && cst.Ino == st.Ino {
			return m.cipher + "/" + rel
		}
	}
	m.t.Fatalf("no cipher entry for %s", name)
	return ""
}

func (m *testMount) cipherFiles() []string {
	m.t.Helper()
	var out []string
	err := filepath.Walk(m.cipher, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != m.cipher {
			out = append(out, strings.TrimPrefix(p, m.cipher+"/"))
		}
		return nil
	})
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

func mustWrite(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantErrno(t testing.TB, err error, want syscall.Errno, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", what, err, want)
	}
}
