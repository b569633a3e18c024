package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// nvIndexes lists the NV indexes defined in sealfs's range. Call it with no
// other client connected: swtpm serves one connection at a time.
func (s *swtpmServer) nvIndexes(t *testing.T) []uint32 {
	t.Helper()
	conn, err := s.dialData()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: 0x01800000, PropertyCount: 64}.Execute(transport.FromReadWriteCloser(conn))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, h := range hs.Handle {
		if h <= 0x01BFFFFF {
			out = append(out, uint32(h))
		}
	}
	return out
}

// An init whose recovery key is not confirmed takes the vault back; with
// --max-tries it must also free the NV index it defined, or every such
// attempt leaks one of the TPM's few NV slots.
func TestCLIInitUnconfirmedFreesNVIndex(t *testing.T) {
	e := newCLIEnv(t, defaultDA)
	pwFile := e.secretFile("pw", "unconfirmed-init")
	cmd := exec.Command(sealfsBin, "init", "--password-file", pwFile, "--max-tries", "3", e.cipher)
	cmd.Env = append(os.Environ(), "SEALFS_TPM="+e.tpm.spec, "XDG_RUNTIME_DIR="+e.runtime, "XDG_STATE_HOME="+e.state)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal: confirmation fails
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the vault was not created") {
		t.Fatalf("init without a terminal to confirm: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(e.cipher, "sealfs.vault")); !os.IsNotExist(err) {
		t.Fatalf("vault header left behind: %v", err)
	}
	if nv := e.tpm.nvIndexes(t); len(nv) != 0 {
		t.Fatalf("NV indexes %#x left defined by an init that created no vault", nv)
	}
}
