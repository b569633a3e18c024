package tpm

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// Another program uses up a limited slot's last tries between sealfs's
// look at the count and its PolicySecret: the TPM answers
// TPM_RC_AUTH_UNAVAILABLE, which must read as "no tries left", not as a
// generic error, and must not be reported as a wrong password.
func TestLimitedTriesUsedUpMeanwhile(t *testing.T) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Skip("swtpm not installed (Debian: apt install swtpm swtpm-tools)")
	}
	dir, err := os.MkdirTemp("/tmp", "tl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tp, err := Open("swtpm:"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	auth := []byte("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA")
	k, err := tp.SealLimited([]byte("secret"), auth, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	var burnt []string
	beforePinSecret = func(t *TPM, nv tpm2.NamedHandle) {
		for range 2 {
			sess, closeSess, err := tpm2.PolicySession(t.tpm, tpm2.TPMAlgSHA256, 16)
			if err != nil {
				burnt = append(burnt, err.Error())
				return
			}
			_, err = tpm2.PolicySecret{AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: tpm2.PasswordAuth([]byte("other"))},
				PolicySession: sess.Handle(), NonceTPM: sess.NonceTPM()}.Execute(t.tpm)
			closeSess()
			burnt = append(burnt, err.Error())
		}
	}
	defer func() { beforePinSecret = nil }()
	_, err = tp.UnsealLimited(k, auth)
	beforePinSecret = nil
	if len(burnt) != 2 || !strings.Contains(burnt[1], "TPM_RC_BAD_AUTH") {
		t.Fatalf("set-up: the other program's guesses got %q", burnt)
	}
	if !errors.Is(err, ErrTriesUsedUp) || !errors.Is(err, ErrTriesExhausted) || errors.Is(err, ErrWrongPassword) {
		t.Fatalf("right password after the tries ran out meanwhile: %v; want ErrTriesUsedUp", err)
	}
	if !strings.Contains(err.Error(), "another program used the last tries while this unlock ran") {
		t.Errorf("message: %v", err)
	}
	if left, _, err := tp.TriesLeft(k); err != nil || left != 0 {
		t.Fatalf("tries left %d, %v", left, err)
	}
}
