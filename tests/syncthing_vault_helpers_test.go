package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// A vault shared by two devices through real Syncthing, as issue 15 asks:
// each device is a cliEnv (its own swtpm, HOME, state and runtime
// directories), the two cipher folders are the Syncthing pair's shared
// folders on loopback, and device B joined with `sealfs recover`.

type syncedVault struct {
	p        *syncthingPair
	a, b     *cliEnv
	pwA, pwB string
}

// newSyncedVault makes the vault on A, shares it, and lets B join with the
// recovery key once the header has arrived. beforeJoin, if set, runs once
// the pair is in sync and before B's recover (to set ignores, say).
func newSyncedVault(t *testing.T, beforeJoin func(p *syncthingPair)) *syncedVault {
	t.Helper()
	requireSyncthing(t)
	requireFUSE(t)
	s := &syncedVault{a: newCLIEnv(t, defaultDA), b: newCLIEnv(t, defaultDA)}
	for _, e := range []*cliEnv{s.a, s.b} {
		home := filepath.Join(e.base, "home")
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		e.extraEnv = append(e.extraEnv, "HOME="+home)
	}
	s.pwA = s.a.secretFile("pwA", "device A password")
	rk := s.a.initVault(s.pwA)
	if err := os.Mkdir(s.b.cipher, 0o700); err != nil {
		t.Fatal(err)
	}
	s.p = startSyncthingPair(t, syncthingOptions{DirA: s.a.cipher, DirB: s.b.cipher})
	if beforeJoin != nil {
		beforeJoin(s.p)
	}
	rkFile := s.b.secretFile("rk", rk)
	s.pwB = s.b.secretFile("pwB", "device B password")
	s.b.secrets = append(s.b.secrets, "device A password")
	s.b.mustRun("recover", "--recovery-key-file", rkFile, "--password-file", s.pwB, s.b.cipher)
	return s
}

// pw is the device's password file.
func (s *syncedVault) pw(e *cliEnv) string {
	if e == s.a {
		return s.pwA
	}
	return s.pwB
}

func (s *syncedVault) mount(e *cliEnv) {
	e.mustRun("mount", "--password-file", s.pw(e), e.cipher, e.mnt)
}
func (s *syncedVault) unmount(e *cliEnv) { e.mustRun("unmount", e.mnt) }

// withMount runs fn with e's vault mounted.
func (s *syncedVault) withMount(e *cliEnv, fn func()) {
	s.mount(e)
	defer s.unmount(e)
	fn()
}

func (s *syncedVault) devices() []*cliEnv { return []*cliEnv{s.a, s.b} }

func (s *syncedVault) name(e *cliEnv) string {
	if e == s.a {
		return "A"
	}
	return "B"
}

// fsckReport is what `fsck --json` prints.
type fsckReport struct {
	Files          int `json:"files"`
	ConflictCopies int `json:"conflict_copies"`
	SyncFiles      int `json:"sync_service_files"`
	Problems       []struct {
		Class      string `json:"class"`
		Kind       string `json:"kind"`
		CipherPath string `json:"cipher_path"`
		PlainPath  string `json:"plain_path"`
		PlainDir   string `json:"plain_dir"`
		Detail     string `json:"detail"`
		Repair     string `json:"repair"`
		Repaired   bool   `json:"repaired"`
	} `json:"problems"`
}

func (r fsckReport) count(class string) int {
	n := 0
	for _, p := range r.Problems {
		if p.Class == class {
			n++
		}
	}
	return n
}

// fsck runs `sealfs fsck --json` with extra flags and checks its exit
// status.
func (s *syncedVault) fsck(t *testing.T, e *cliEnv, wantCode int, extra ...string) fsckReport {
	t.Helper()
	r := e.run(append(append([]string{"fsck", "-q", "--json", "--password-file", s.pw(e)}, extra...), e.cipher)...)
	var rep fsckReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("fsck --json on %s: %v\n%s%s", s.name(e), err, r.stdout, r.stderr)
	}
	if r.code != wantCode {
		t.Fatalf("fsck on %s: exit %d, want %d\n%s%s", s.name(e), r.code, wantCode, r.stdout, r.stderr)
	}
	return rep
}

// plainTree lists the regular files, symlinks and directories below dir
// as path → content ("-> target" for a symlink, "/" for a directory).
func plainTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.IsDir():
			out[rel] = "/"
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

// sameTree fails the test where got and want differ.
func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var diff []string
	for _, k := range sorted {
		g, gok := got[k]
		w, wok := want[k]
		if g != w || gok != wok {
			diff = append(diff, "  "+k+": got "+quoteOr(g, gok)+", want "+quoteOr(w, wok))
		}
	}
	if len(diff) > 0 {
		t.Errorf("%s differs:\n%s", what, strings.Join(diff, "\n"))
	}
}

func quoteOr(s string, ok bool) string {
	if !ok {
		return "(absent)"
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func jsonBody(v any) (io.Reader, error) {
	b, err := json.Marshal(v)
	return bytes.NewReader(b), err
}
