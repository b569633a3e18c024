package tests

// PCR-bound slots are no password oracle (issue 14): once the PCRs differ
// from the ones a slot was sealed against, no TPM command that a thief's
// own client can send tells the right password from a wrong one, and the
// DA and PIN counters move only as docs/threat-model.md says.

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/sealfs/sealfs/tpm"
)

// rawSRK re-derives the SRK as sealfs does, on an attacker's connection.
func rawSRK(t *testing.T, raw transport.TPM) tpm2.NamedHandle {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(raw) })
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
}

// rawLoad loads a stored blob under srk.
func rawLoad(t *testing.T, raw transport.TPM, srk tpm2.NamedHandle, public, private []byte) tpm2.NamedHandle {
	t.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](public)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](private)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := tpm2.Load{ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate: *priv, InPublic: *pub}.Execute(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(raw) })
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
}

// rcOf is the TPM's answer as the attacker sees it: the response code, or
// "success".
func rcOf(err error) string {
	if err == nil {
		return "success"
	}
	var rc tpm2.TPMRC
	if errors.As(err, &rc) {
		return fmt.Sprintf("%#x", uint32(rc))
	}
	var se tpm2.TPMFmt1Error
	if errors.As(err, &se) {
		return se.Error()
	}
	return err.Error()
}

func rawDACounter(t *testing.T, raw transport.TPM) uint32 {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTLockoutCounter), PropertyCount: 1}.Execute(raw)
	if err != nil {
		t.Fatal(err)
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTLockoutCounter {
		t.Fatalf("lockout counter: %v", err)
	}
	return props.TPMProperty[0].Value
}

func pcr16() tpm2.TPMLPCRSelection {
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(16)}}}
}

// objectProbes asks the TPM about a loaded sealed object with auth as its
// password in every way that uses the object's authValue: Unseal and
// ObjectChangeAuth, each in an HMAC session and in a policy session that
// replays PolicyPCR ∧ PolicyAuthValue (plus PolicyCommandCode for the
// ADMIN role). It returns the answers in order.
func objectProbes(t *testing.T, raw transport.TPM, srk, obj tpm2.NamedHandle, auth []byte) []string {
	t.Helper()
	var out []string
	_, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name,
		Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth))}}.Execute(raw)
	out = append(out, "unseal/hmac "+rcOf(err))
	_, err = tpm2.ObjectChangeAuth{ObjectHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name,
		Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth))},
		ParentHandle: srk, NewAuth: tpm2.TPM2BAuth{Buffer: []byte("thief")}}.Execute(raw)
	out = append(out, "changeauth/hmac "+rcOf(err))
	for _, admin := range []bool{false, true} {
		sess, closeSess, err := tpm2.PolicySession(raw, tpm2.TPMAlgSHA256, 16, tpm2.Auth(auth))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcr16()}).Execute(raw); err != nil {
			t.Fatal(err)
		}
		if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(raw); err != nil {
			t.Fatal(err)
		}
		if admin {
			if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCObjectChangeAuth}).Execute(raw); err != nil {
				t.Fatal(err)
			}
			_, err = tpm2.ObjectChangeAuth{ObjectHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name, Auth: sess},
				ParentHandle: srk, NewAuth: tpm2.TPM2BAuth{Buffer: []byte("thief")}}.Execute(raw)
			out = append(out, "changeauth/policy "+rcOf(err))
		} else {
			_, err = tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name, Auth: sess}}.Execute(raw)
			out = append(out, "unseal/policy "+rcOf(err))
		}
		closeSess()
	}
	return out
}

func TestPCRSlotNoPasswordOracle(t *testing.T) {
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, daParams{maxTries: 32, interval: 1000e9, recovery: 1000e9})
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	k, err := tp.Seal(testSecret, testPass, []int{16})
	if err != nil {
		t.Fatal(err)
	}
	if !k.PCRsGuardPassword() {
		t.Fatal("a new PCR-bound slot does not guard its password")
	}
	if err := tp.PCRExtend(16, []byte("booted from a USB stick")); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{testPass, otherPass} {
		if _, err := tp.Unseal(k, p); !errors.Is(err, tpm.ErrPCRMismatch) {
			t.Fatalf("sealfs Unseal with changed PCRs: %v", err)
		}
	}
	tp.Close()

	raw := rawTPM(t, sw)
	srk := rawSRK(t, raw)
	obj := rawLoad(t, raw, srk, k.Public, k.Private)
	right := objectProbes(t, raw, srk, obj, testPass)
	wrong := objectProbes(t, raw, srk, obj, otherPass)
	t.Logf("right password: %v", right)
	t.Logf("wrong password: %v", wrong)
	for i := range right {
		if right[i] != wrong[i] {
			t.Errorf("the TPM tells the passwords apart: %s against %s", right[i], wrong[i])
		}
		if right[i][len(right[i])-len("success"):] == "success" {
			t.Errorf("%s with changed PCRs", right[i])
		}
	}
	// docs/threat-model.md: with other PCRs no probe is a DA strike.
	if n := rawDACounter(t, raw); n != 0 {
		t.Errorf("DA counter %d after probes with changed PCRs, want 0", n)
	}
	// With the right PCRs the object is an ordinary DA-protected slot.
	if _, err := (tpm2.PCRReset{PCRHandle: tpm2.AuthHandle{Handle: 16, Auth: tpm2.PasswordAuth(nil)}}).Execute(raw); err != nil {
		t.Fatal(err)
	}
	right = objectProbes(t, raw, srk, obj, testPass)
	if right[2] != "unseal/policy success" {
		t.Errorf("right password, right PCRs: %v", right)
	}
	if right[1] == "changeauth/hmac success" || right[3] == "changeauth/policy success" {
		t.Errorf("ObjectChangeAuth answered the right password: %v", right)
	}
	raw.Close()
}

func TestLimitedPCRSlotNoPasswordOracle(t *testing.T) {
	const n = 6
	sw := startSwtpm(t, false)
	tp := openTPM(t, sw.spec, defaultDA)
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	k, err := tp.SealLimited(testSecret, testPass, []int{16}, n)
	if err != nil {
		t.Fatal(err)
	}
	if !k.PCRsGuardPassword() || len(k.GatePublic) == 0 {
		t.Fatal("a new PCR-bound limited slot has no gate")
	}
	if err := tp.PCRExtend(16, []byte("booted from a USB stick")); err != nil {
		t.Fatal(err)
	}
	// sealfs itself refuses before any try.
	for _, p := range [][]byte{testPass, otherPass} {
		if _, err := tp.UnsealLimited(k, p); !errors.Is(err, tpm.ErrPCRMismatch) {
			t.Fatalf("sealfs UnsealLimited with changed PCRs: %v", err)
		}
	}
	wantTriesLeft(t, tp, k, n)
	tp.Close()

	// A thief's client: the gate does not open without the PCRs, and the
	// NV index answers the right password's authValue like any other.
	raw := rawTPM(t, sw)
	srk := rawSRK(t, raw)
	gate := rawLoad(t, raw, srk, k.GatePublic, k.GatePrivate)
	sess, closeSess, err := tpm2.PolicySession(raw, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcr16()}).Execute(raw); err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: gate.Handle, Name: gate.Name, Auth: sess}}.Execute(raw)
	closeSess()
	if !errors.Is(err, tpm2.TPMRCPolicyFail) {
		t.Fatalf("gate with changed PCRs: %v, want TPM_RC_POLICY_FAIL", err)
	}
	right := rcOf(rawPolicySecret(t, raw, k, testPass))
	wrong := rcOf(rawPolicySecret(t, raw, k, otherPass))
	if right != wrong || right == "success" {
		t.Errorf("PolicySecret on the NV index: right password %s, wrong %s", right, wrong)
	}
	if n := rawDACounter(t, raw); n != 0 {
		t.Errorf("DA counter %d, want 0 (the index and the objects are NO_DA)", n)
	}
	raw.Close()

	// As documented: each of those two guesses used up one try (it cannot
	// tell anything, but it is counted), and the right PCRs bring the
	// slot back for the right password, which re-arms it.
	tp = openTPM(t, sw.spec, defaultDA)
	wantTriesLeft(t, tp, k, n-2)
	if err := tp.PCRReset(16); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.UnsealLimited(k, otherPass); !errors.Is(err, tpm.ErrWrongPassword) {
		t.Fatalf("wrong password, right PCRs: %v", err)
	}
	wantTriesLeft(t, tp, k, n-3)
	if got, err := tp.UnsealLimited(k, testPass); err != nil || string(got) != string(testSecret) {
		t.Fatalf("right password, right PCRs: %v", err)
	}
	wantTriesLeft(t, tp, k, n)
	tp.Close()
	sw.assertNoHandles(t)
}
