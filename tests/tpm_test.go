package tests

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/sealfs/sealfs/tpm"
)

var (
	testSecret = bytes.Repeat([]byte{0x00, 0xA5}, 16)     // binary, zeros included
	testPass   = []byte("Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA") // like an encoded KDF output
	otherPass  = []byte("d3JvbmctcGFzc3dvcmQtZ3Vlc3MK")
)

func TestSealUnseal(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)

	k, err := tp.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	srk, err := tp.SRKName()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(srk, k.SRKName) {
		t.Errorf("slot SRKName %x, TPM's %x", k.SRKName, srk)
	}
	for range 2 { // a slot opens any number of times
		got, err := tp.Unseal(k, testPass)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, testSecret) {
			t.Fatalf("unsealed %x, want %x", got, testSecret)
		}
	}
	info, err := tp.Lockout()
	if err != nil {
		t.Fatal(err)
	}
	if info.Counter != 0 || info.MaxTries != defaultDA.maxTries || info.Interval != defaultDA.interval {
		t.Errorf("lockout state %+v after successful unseals", info)
	}

	if _, err := tp.Seal(testSecret, []byte("pass\x00word"), nil); err == nil {
		t.Error("Seal accepted an authValue containing 0x00")
	}
	if _, err := tp.Unseal(k, []byte("pass\x00word")); err == nil || errors.Is(err, tpm.ErrWrongPassword) {
		t.Errorf("Unseal with 0x00 in authValue: %v, want a refusal before the TPM", err)
	}
	if _, err := tp.Seal(make([]byte, tpm.MaxSecret+1), testPass, nil); err == nil {
		t.Error("Seal accepted an oversized secret")
	}
	if _, err := tp.Unseal(&tpm.SealedKey{Public: []byte{1, 2, 3}, Private: k.Private, SRKName: k.SRKName}, testPass); err == nil {
		t.Error("Unseal accepted a corrupt public area")
	}
	tp.Close()
	sw.assertNoHandles(t)
}

func TestWrongPasswordReportsTriesLeft(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, daParams{maxTries: 5, interval: 600 * time.Second, recovery: 600 * time.Second})
	k, err := tp.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tp.Unseal(k, otherPass)
	var ae *tpm.AuthError
	if !errors.Is(err, tpm.ErrWrongPassword) || !errors.As(err, &ae) {
		t.Fatalf("wrong password: %v, want *AuthError", err)
	}
	if ae.TriesLeft != 4 || ae.LockoutInterval != 600*time.Second {
		t.Errorf("AuthError %+v, want 4 tries left, 10 min", *ae)
	}
	if msg := err.Error(); !strings.Contains(msg, "wrong password (4 tries left before the TPM locks for 10 minutes)") {
		t.Errorf("message %q", msg)
	}
	if strings.Contains(err.Error(), string(otherPass)) {
		t.Error("error message contains the password")
	}
	if got, err := tp.Unseal(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("right password after a wrong one: %v", err)
	}
}

func TestLockoutThenRecovery(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, daParams{maxTries: 2, interval: time.Second, recovery: time.Second})
	k, err := tp.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := tp.Unseal(k, otherPass); !errors.Is(err, tpm.ErrWrongPassword) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	_, err = tp.Unseal(k, testPass)
	var le *tpm.LockoutError
	if !errors.Is(err, tpm.ErrLockout) || !errors.As(err, &le) {
		t.Fatalf("right password in lockout: %v, want ErrLockout", err)
	}
	if !strings.Contains(err.Error(), "retry in 1 second or use `sealfs recover` with your recovery key") {
		t.Errorf("lockout message %q", err)
	}
	if info, err := tp.Lockout(); err != nil || !info.InLockout {
		t.Errorf("Lockout() = %+v, %v; want InLockout", info, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := tp.Unseal(k, testPass)
		if err == nil {
			if !bytes.Equal(got, testSecret) {
				t.Fatal("wrong secret")
			}
			break
		}
		if !errors.Is(err, tpm.ErrLockout) || time.Now().After(deadline) {
			t.Fatalf("after the lockout interval: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestBlobFromAnotherTPM(t *testing.T) {
	a := openTPM(t, startSwtpm(t, false).spec, defaultDA)
	sw := startSwtpm(t, false)
	b := openTPM(t, sw.spec, defaultDA)
	k, err := a.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Unseal(k, testPass)
	if !errors.Is(err, tpm.ErrWrongTPM) {
		t.Fatalf("blob of TPM A on TPM B: %v, want ErrWrongTPM", err)
	}
	if !strings.Contains(err.Error(), "belongs to another machine") {
		t.Errorf("message %q", err)
	}
	if info, err := b.Lockout(); err != nil || info.Counter != 0 {
		t.Errorf("TPM B's DA counter %+v, %v: the password must not have been tried", info, err)
	}
	b.Close()
	sw.assertNoHandles(t)
}

func TestPCRBinding(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	for _, p := range []int{16, 23} {
		if err := tp.PCRReset(p); err != nil {
			t.Fatal(err)
		}
	}
	k, err := tp.Seal(testSecret, testPass, []int{23, 16})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.PCRs) != 2 || k.PCRs[0] != 16 || k.PCRs[1] != 23 || len(k.PCRValues) != 2 {
		t.Fatalf("slot PCRs %v values %d", k.PCRs, len(k.PCRValues))
	}
	if got, err := tp.Unseal(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("unseal with unchanged PCRs: %v", err)
	}
	if err := tp.PCRExtend(23, []byte("kernel upgrade")); err != nil {
		t.Fatal(err)
	}
	_, err = tp.Unseal(k, testPass)
	var pe *tpm.PCRError
	if !errors.Is(err, tpm.ErrPCRMismatch) || !errors.As(err, &pe) || len(pe.Changed) != 1 || pe.Changed[0] != 23 {
		t.Fatalf("after extending PCR 23: %v, want PCRError naming 23", err)
	}
	if !strings.Contains(err.Error(), "PCR 23") {
		t.Errorf("message %q", err)
	}
	// Without the stored values the TPM's own verdict must still be mapped.
	bare := *k
	bare.PCRValues = nil
	if _, err = tp.Unseal(&bare, testPass); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("policy failure without stored values: %v", err)
	}
	if info, err := tp.Lockout(); err != nil || info.Counter != 0 {
		t.Errorf("DA counter %+v, %v: a PCR mismatch must cost no try", info, err)
	}
	if err := tp.PCRReset(23); err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("after resetting PCR 23: %v", err)
	}
	if _, err := tp.Unseal(k, otherPass); !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("wrong password with right PCRs: %v", err)
	}
	tp.Close()
	sw.assertNoHandles(t)
}

func TestNoTPM(t *testing.T) {
	requireSwtpm(t)
	dir := shortDir(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	l.Close()
	for _, spec := range []string{
		"unix:" + filepath.Join(dir, "missing.sock"),
		"tcp:" + closedPort,
		"/dev/no-such-tpm",
	} {
		tp, err := tpm.Open(spec, nil)
		if err == nil {
			tp.Close()
			t.Fatalf("Open(%q) succeeded", spec)
		}
		var ne *tpm.NoTPMError
		if !errors.Is(err, tpm.ErrNoTPM) || !errors.As(err, &ne) {
			t.Errorf("Open(%q): %v, want ErrNoTPM", spec, err)
		}
		if !strings.Contains(err.Error(), "fix:") || !strings.Contains(err.Error(), "swtpm") {
			t.Errorf("Open(%q) error does not say how to fix it: %q", spec, err)
		}
	}
	if _, err := os.Stat("/dev/tpmrm0"); os.IsNotExist(err) {
		t.Setenv(tpm.EnvTPM, "")
		if _, err := tpm.Open("", nil); !errors.Is(err, tpm.ErrNoTPM) || !strings.Contains(err.Error(), "/dev/tpmrm0") {
			t.Errorf("Open(\"\") without any TPM: %v", err)
		}
	}
	// A swtpm that dies while in use.
	// Its state dir is thrown away, so the unclean stop does not matter.
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	k, err := tp.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	sw.kill()
	if _, err := tp.Unseal(k, testPass); err == nil || errors.Is(err, tpm.ErrWrongPassword) {
		t.Errorf("Unseal on a stopped swtpm: %v", err)
	}
}

func TestTCPTransport(t *testing.T) {
	sw := startSwtpm(t, true)
	tp := openTPM(t, sw.spec, defaultDA)
	k, err := tp.Seal(testSecret, testPass, []int{16})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("unseal over tcp: %v", err)
	}
	if _, err := tp.Unseal(k, otherPass); !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("wrong password over tcp: %v", err)
	}
}

// A client that crashed with all 3 of swtpm's object slots loaded must not
// break the next one.
func TestLeftoverHandlesFlushed(t *testing.T) {
	sw := startSwtpm(t, false)
	conn, err := sw.dialData()
	if err != nil {
		t.Fatal(err)
	}
	raw := transport.FromReadWriteCloser(conn)
	for range 3 {
		if _, err := (tpm2.CreatePrimary{
			PrimaryHandle: tpm2.TPMRHOwner,
			InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
		}).Execute(raw); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	tp := openTPM(t, sw.spec, defaultDA)
	k, err := tp.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Unseal(k, testPass); err != nil {
		t.Fatal(err)
	}
}

func TestManagedSwtpm(t *testing.T) {
	requireSwtpm(t)
	// Longer than a unix socket path may be: sockets are reached relative to DIR.
	dir := filepath.Join(shortDir(t), strings.Repeat("d", 60), strings.Repeat("e", 60), "state")
	spec := "swtpm:" + dir
	var k *tpm.SealedKey
	for round := range 3 {
		tp, err := tpm.Open(spec, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if !tp.Managed() {
			t.Error("swtpm:DIR not Managed()")
		}
		if round == 0 {
			if err := tp.SetDictionaryAttackParams(3, 1000*time.Second, 1000*time.Second, nil); err != nil {
				t.Fatal(err)
			}
			if k, err = tp.Seal(testSecret, testPass, nil); err != nil {
				t.Fatal(err)
			}
		}
		// A DA-protected authorisation in every run: an unclean stop would
		// raise the counter at the next start.
		if got, err := tp.Unseal(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
			t.Fatalf("round %d: %v", round, err)
		}
		if info, err := tp.Lockout(); err != nil || info.Counter != 0 {
			t.Errorf("round %d: DA state %+v, %v; want counter 0", round, info, err)
		}
		if err := tp.Close(); err != nil {
			t.Fatal(err)
		}
		if pids := swtpmPids(dir); len(pids) > 0 {
			t.Fatalf("round %d: swtpm left running after Close: %v", round, pids)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, %v; want 0700", fi.Mode(), err)
	}
}

// A swtpm left running on DIR by a crashed sealfs is replaced cleanly.
func TestManagedSwtpmLeftover(t *testing.T) {
	requireSwtpm(t)
	dir := shortDir(t)
	tp, err := tpm.Open("swtpm:"+dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.SetDictionaryAttackParams(3, 1000*time.Second, 1000*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	k, err := tp.Seal(testSecret, testPass, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp.Close()

	// The crashed run: swtpm started the way sealfs starts it, used, never stopped.
	os.Remove(filepath.Join(dir, "sealfs.lock"))
	leftover := startSwtpmIn(t, dir, false)
	conn, err := leftover.dialData()
	if err != nil {
		t.Fatal(err)
	}
	raw := transport.FromReadWriteCloser(conn)
	for range 3 { // and it crashed with all object slots full
		if _, err := (tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}).Execute(raw); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	tp, err = tpm.Open("swtpm:"+dir, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.Unseal(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("unseal after replacing the leftover swtpm: %v", err)
	}
	if info, err := tp.Lockout(); err != nil || info.Counter != 0 {
		t.Errorf("DA state %+v, %v; want counter 0", info, err)
	}
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-leftover.done:
	case <-time.After(5 * time.Second):
		t.Fatal("leftover swtpm still running")
	}
	if pids := swtpmPids(dir); len(pids) > 0 {
		t.Fatalf("swtpm left running: %v", pids)
	}
}

func TestManagedSwtpmExclusive(t *testing.T) {
	requireSwtpm(t)
	dir := shortDir(t)
	tp, err := tpm.Open("swtpm:"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if tp2, err := tpm.Open("swtpm:"+dir, nil); err == nil {
		tp2.Close()
		t.Fatal("second Open of the same swtpm:DIR succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open: %v", err)
	}
}

func BenchmarkUnseal(b *testing.B) {
	sw := startSwtpm(b, false)
	tp := openTPM(b, sw.spec, defaultDA)
	for _, bc := range []struct {
		name string
		pcrs []int
	}{{"password", nil}, {"pcr+password", []int{16}}} {
		b.Run(bc.name, func(b *testing.B) {
			k, err := tp.Seal(testSecret, testPass, bc.pcrs)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := tp.Unseal(k, testPass); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// ---- Attempt-limited slots (tpm/limited.go) ----

// rawTPM connects to sw directly, as an attacker's own client would. The
// tpm.TPM on sw must be closed first, and the raw one before the next
// Open: swtpm serves one client at a time.
func rawTPM(t *testing.T, sw *swtpmServer) transport.TPMCloser {
	t.Helper()
	conn, err := sw.dialData()
	if err != nil {
		t.Fatal(err)
	}
	raw := transport.FromReadWriteCloser(conn)
	t.Cleanup(func() { raw.Close() })
	return raw
}

// rawPolicySecret tries a password against the slot's NV index the way the
// slot's policy needs it, then abandons the policy session without
// unsealing: a client that skips sealfs's own checks, or one that crashed
// mid-attempt.
func rawPolicySecret(t *testing.T, raw transport.TPM, k *tpm.SealedKey, pass []byte) error {
	t.Helper()
	sess, closeSess, err := tpm2.PolicySession(raw, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSess()
	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMHandle(k.NVIndex), Name: tpm2.TPM2BName{Buffer: k.NVName}, Auth: tpm2.PasswordAuth(pass)},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}.Execute(raw)
	return err
}

func wantTriesLeft(t *testing.T, tp *tpm.TPM, k *tpm.SealedKey, want int) {
	t.Helper()
	left, max, err := tp.TriesLeft(k)
	if err != nil || left != want || max != int(k.MaxTries) {
		t.Fatalf("TriesLeft = %d of %d, %v; want %d of %d", left, max, err, want, k.MaxTries)
	}
}

func TestLimitedFailuresThenSuccessRearms(t *testing.T) {
	const n = 4
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, daParams{maxTries: 2, interval: 1000 * time.Second, recovery: 1000 * time.Second})
	k, err := tp.SealLimited(testSecret, testPass, nil, n)
	if err != nil {
		t.Fatal(err)
	}
	wantTriesLeft(t, tp, k, n)
	for round := range 2 { // the second round proves the first success re-armed the slot
		for i := 1; i < n; i++ {
			_, err = tp.UnsealLimited(k, otherPass)
			var te *tpm.TriesError
			if !errors.As(err, &te) || !errors.Is(err, tpm.ErrWrongPassword) || te.Left != n-i || te.Max != n {
				t.Fatalf("round %d, failure %d: %v; want %d of %d tries left", round, i, err, n-i, n)
			}
			if errors.Is(err, tpm.ErrTriesExhausted) {
				t.Fatalf("exhausted after %d failures", i)
			}
		}
		if !strings.Contains(err.Error(), "1 of 4 tries left; after that only the recovery key opens this vault") {
			t.Errorf("message %q", err)
		}
		got, err := tp.UnsealLimited(k, testPass)
		if err != nil || !bytes.Equal(got, testSecret) {
			t.Fatalf("round %d: right password after %d failures: %v", round, n-1, err)
		}
		wantTriesLeft(t, tp, k, n)
	}
	// PIN-fail indexes are NO_DA: the TPM-wide lockout (2 tries here) is untouched.
	if info, err := tp.Lockout(); err != nil || info.Counter != 0 || info.InLockout {
		t.Errorf("DA state %+v, %v", info, err)
	}
	if _, err := tp.Unseal(k, testPass); err == nil {
		t.Error("Unseal accepted an attempt-limited slot")
	}
	if err := tp.DeleteLimited(k); err != nil {
		t.Fatal(err)
	}
	tp.Close()
	sw.assertNoHandles(t)
}

func TestLimitedExhaustedForGood(t *testing.T) {
	const n = 3
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	k, err := tp.SealLimited(testSecret, testPass, nil, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		_, err = tp.UnsealLimited(k, otherPass)
		if !errors.Is(err, tpm.ErrWrongPassword) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if !errors.Is(err, tpm.ErrTriesExhausted) || !strings.Contains(err.Error(), "last try") {
		t.Fatalf("last failure: %v; want ErrTriesExhausted too", err)
	}
	for range 2 {
		if _, err := tp.UnsealLimited(k, testPass); !errors.Is(err, tpm.ErrTriesExhausted) || errors.Is(err, tpm.ErrWrongPassword) {
			t.Fatalf("right password after %d failures: %v; want ErrTriesExhausted", n, err)
		}
	}
	wantTriesLeft(t, tp, k, 0)
	tp.Close()

	// The TPM enforces it, not sealfs: a client of its own gets nowhere
	// with the right password either.
	raw := rawTPM(t, sw)
	if err := rawPolicySecret(t, raw, k, testPass); err == nil {
		t.Fatal("the TPM accepted the right password on an exhausted slot")
	}
}

func TestLimitedAbandonedAttemptCostsAtMostOneTry(t *testing.T) {
	const n = 5
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	k, err := tp.SealLimited(testSecret, testPass, nil, n)
	if err != nil {
		t.Fatal(err)
	}
	tp.Close()

	// A wrong guess abandoned mid-attempt (crash, or an attacker's client
	// that never unseals): counted once, by the TPM, in the same command.
	raw := rawTPM(t, sw)
	if err := rawPolicySecret(t, raw, k, otherPass); err == nil {
		t.Fatal("wrong password accepted")
	}
	raw.Close()
	tp = openTPM(t, sw.spec, defaultDA)
	wantTriesLeft(t, tp, k, n-1)
	tp.Close()

	// A right password abandoned before Unseal costs nothing.
	raw = rawTPM(t, sw)
	if err := rawPolicySecret(t, raw, k, testPass); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	tp = openTPM(t, sw.spec, defaultDA)
	wantTriesLeft(t, tp, k, n)
	if got, err := tp.UnsealLimited(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatalf("after abandoned attempts: %v", err)
	}
}

func TestLimitedPCRMismatchCostsNoTry(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	k, err := tp.SealLimited(testSecret, testPass, []int{16}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tp.UnsealLimited(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatal(err)
	}
	if err := tp.PCRExtend(16, []byte("other boot")); err != nil {
		t.Fatal(err)
	}
	var pe *tpm.PCRError
	if _, err := tp.UnsealLimited(k, testPass); !errors.As(err, &pe) || len(pe.Changed) != 1 || pe.Changed[0] != 16 {
		t.Fatalf("changed PCR 16: %v", err)
	}
	bare := *k
	bare.PCRValues = nil // no early check: the TPM's policy must refuse
	if _, err := tp.UnsealLimited(&bare, testPass); !errors.Is(err, tpm.ErrPCRMismatch) {
		t.Fatalf("changed PCR 16, no stored values: %v", err)
	}
	wantTriesLeft(t, tp, k, 3)
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	if got, err := tp.UnsealLimited(k, testPass); err != nil || !bytes.Equal(got, testSecret) {
		t.Fatal(err)
	}
	tp.Close()
	sw.assertNoHandles(t)
}

// An owner who deletes the NV index and defines a look-alike with a
// password of their own can neither open the slot nor fool sealfs.
func TestLimitedLookalikeIndexRefused(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	k, err := tp.SealLimited(testSecret, testPass, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	tp.Close()

	raw := rawTPM(t, sw)
	nv := tpm2.NamedHandle{Handle: tpm2.TPMHandle(k.NVIndex), Name: tpm2.TPM2BName{Buffer: k.NVName}}
	rp, err := tpm2.NVReadPublic{NVIndex: nv.Handle}.Execute(raw)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: nv}).Execute(raw); err != nil {
		t.Fatal(err)
	}
	pub.Attributes.Written = false
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, Auth: tpm2.TPM2BAuth{Buffer: []byte("attacker")}, PublicInfo: tpm2.New2B(*pub)}).Execute(raw); err != nil {
		t.Fatal(err)
	}
	if err := rawPolicySecret(t, raw, k, []byte("attacker")); err == nil {
		t.Fatal("PolicySecret on the unwritten look-alike succeeded")
	}
	raw.Close()

	tp = openTPM(t, sw.spec, defaultDA)
	if _, err := tp.UnsealLimited(k, testPass); !errors.Is(err, tpm.ErrSlotGone) {
		t.Fatalf("look-alike index: %v; want ErrSlotGone", err)
	}
	if err := tp.DeleteLimited(k); err != nil {
		t.Fatalf("DeleteLimited must leave a foreign index alone: %v", err)
	}
}

func BenchmarkUnsealLimited(b *testing.B) {
	sw := startSwtpm(b, false)
	tp := openTPM(b, sw.spec, defaultDA)
	k, err := tp.SealLimited(testSecret, testPass, nil, 10)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := tp.UnsealLimited(k, testPass); err != nil {
			b.Fatal(err)
		}
	}
}
