package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLITPMClearedNotAnotherMachine: this machine's own slot under a TPM
// that no longer has its key (here: a fresh swtpm in place of the old one,
// as after a TPM clear or a new motherboard) is told apart from another
// machine's slot, with the way out.
func TestCLITPMClearedNotAnotherMachine(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pw := e.secretFile("pw", "cleared-tpm-pw")
	rk := e.initVault(pw)
	e.mustRun("fsck", "-q", "--password-file", pw, e.cipher)

	cleared := startSwtpm(t, false)
	setDA(t, cleared.spec, defaultDA)
	r := e.runWith(cleared.spec, nil, "fsck", "-q", "--password-file", pw, e.cipher)
	wantExit(t, r, 8, "was made on this machine (last used here ")
	wantExit(t, r, 8, "but this TPM no longer has the key it was sealed with: the TPM was cleared")
	wantExit(t, r, 8, "or replaced (a new motherboard). The vault itself is intact.")
	wantExit(t, r, 8, "`sealfs mount --with-recovery "+e.cipher+" MOUNTPOINT`")
	wantExit(t, r, 8, "For good: `sealfs recover "+e.cipher+"`")
	if strings.Contains(r.stderr, "other machines") {
		t.Errorf("this machine's slot is called another machine's:\n%s", r.stderr)
	}
	rkFile := e.secretFile("rk", rk)
	e.runWith(cleared.spec, nil, "recover", "--recovery-key-file", rkFile, "--password-file", pw, e.cipher)
	if r := e.runWith(cleared.spec, nil, "fsck", "-q", "--password-file", pw, e.cipher); r.code != 0 {
		t.Fatalf("fsck after recover on the new TPM: exit %d: %s", r.code, r.stderr)
	}
}

// TestCLISoftwareTPMMessages: the software-TPM warning is one sentence, in
// init and status only, silenced by -q, inside --json rather than on
// stderr; a swtpm:DIR without a TPM is refused except by init (recover,
// enroll), not silently made.
func TestCLISoftwareTPMMessages(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	sw := filepath.Join(e.base, "swtpm")
	spec := "swtpm:" + sw
	pw := e.secretFile("pw", "software-tpm-messages")
	const note = "sealfs: note: this is a software TPM (swtpm, state in " // + dir
	count := func(r cliResult) int { return strings.Count(r.stderr, note) }

	missing := filepath.Join(e.base, "no-such-tpm")
	wantExit(t, e.runWith("swtpm:"+missing, nil, "status", e.cipher), 1, "not a sealfs vault")
	wantExit(t, e.runWith("swtpm:"+missing, nil, "fsck", "--password-file", pw, e.cipher), 8, "not a sealfs vault")
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a command other than init made the software TPM's folder: %v", err)
	}

	r := e.runWith(spec, nil, "init", "--password-file", pw, "--no-confirm", e.cipher)
	e.secrets = append(e.secrets, recoveryKeyRE.FindString(r.stdout))
	if r.code != 0 || count(r) != 1 || !strings.Contains(r.stderr, note+sw+"): ") {
		t.Fatalf("init on a software TPM: exit %d, the note %d times, want once:\n%s", r.code, count(r), r.stderr)
	}
	if strings.Contains(r.stderr, "level=") || strings.Contains(r.stderr, "SOFTWARE TPM") {
		t.Errorf("a log line instead of a sentence:\n%s", r.stderr)
	}
	if r = e.runWith(spec, nil, "status", e.cipher); r.code != 0 || count(r) != 1 {
		t.Errorf("status: exit %d, the note %d times, want once:\n%s", r.code, count(r), r.stderr)
	}
	if r = e.runWith(spec, nil, "status", "-q", e.cipher); r.code != 0 || r.stderr != "" {
		t.Errorf("status -q: exit %d, stderr %q", r.code, r.stderr)
	}
	r = e.runWith(spec, nil, "status", "--json", e.cipher)
	var s struct {
		TPM struct {
			Software bool `json:"software"`
		} `json:"tpm"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || !s.TPM.Software || r.stderr != "" {
		t.Errorf("status --json: %v, software %v, stderr %q", err, s.TPM.Software, r.stderr)
	}
	if r = e.runWith(spec, nil, "fsck", "--password-file", pw, e.cipher); r.code != 0 || r.stderr != "" {
		t.Errorf("fsck on a software TPM: exit %d, stderr %q (no note outside init and status)", r.code, r.stderr)
	}
	r = e.runWith("swtpm:"+missing, nil, "fsck", "--password-file", pw, e.cipher)
	wantExit(t, r, 8, "no software TPM there (no swtpm state in that directory)")
	wantExit(t, r, 8, "only `sealfs init`, `sealfs recover` and `sealfs enroll` start a new software TPM")
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("fsck made a software TPM: %v", err)
	}
}
