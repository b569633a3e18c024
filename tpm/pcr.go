package tpm

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
)

// PC Client TPMs have 24 PCRs; 16 (debug) and 23 (application) are the
// ones software may reset at locality 0.
const numPCRs = 24

func normalisePCRs(pcrs []int) ([]int, error) {
	out := slices.Clone(pcrs)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, p := range out {
		if p < 0 || p >= numPCRs {
			return nil, fmt.Errorf("PCR %d out of range 0..%d", p, numPCRs-1)
		}
	}
	return out, nil
}

func pcrSelection(pcrs []int) tpm2.TPMLPCRSelection {
	idx := make([]uint, len(pcrs))
	for i, p := range pcrs {
		idx[i] = uint(p)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash:      tpm2.TPMAlgSHA256,
		PCRSelect: tpm2.PCClientCompatible.PCRs(idx...),
	}}}
}

// readPCRs returns the SHA-256 bank values of pcrs (sorted, distinct), one
// at a time: a TPM may answer fewer PCRs than asked for per PCR_Read.
func (t *TPM) readPCRs(pcrs []int) ([][]byte, error) {
	vals := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection([]int{p})}.Execute(t.tpm)
		if err != nil {
			return nil, fmt.Errorf("reading PCR %d: %w", p, err)
		}
		if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
			return nil, fmt.Errorf("reading PCR %d: the TPM has no SHA-256 bank for it", p)
		}
		vals[i] = bytes.Clone(rsp.PCRValues.Digests[0].Buffer)
	}
	return vals, nil
}

// pcrAuthPolicy is the policy digest of PolicyPCR(pcrs = values) followed by
// PolicyAuthValue: the object opens only with these PCR values and the password.
func pcrAuthPolicy(pcrs []int, values [][]byte) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: pcrDigest(values)}, Pcrs: pcrSelection(pcrs)}).Update(calc); err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyAuthValue{}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// pcrDigest follows Part 3, PolicyPCR: the hash of the selected PCR values
// concatenated in selection order (ascending index).
func pcrDigest(values [][]byte) []byte {
	h := sha256.New()
	for _, v := range values {
		h.Write(v)
	}
	return h.Sum(nil)
}

// runPCRPolicy replays the seal-time policy. The empty PcrDigest makes the
// TPM use its current PCR values; a mismatch surfaces as TPM_RC_POLICY_FAIL
// on Unseal.
func (t *TPM) runPCRPolicy(sess tpm2.Session, pcrs []int) error {
	if _, err := (tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(pcrs)}).Execute(t.tpm); err != nil {
		return fmt.Errorf("PolicyPCR: %w", err)
	}
	if _, err := (tpm2.PolicyAuthValue{PolicySession: sess.Handle()}).Execute(t.tpm); err != nil {
		return fmt.Errorf("PolicyAuthValue: %w", err)
	}
	return nil
}

// checkPCRs refuses early, before any password reaches the TPM, when the
// seal-time PCR values are known and differ.
func (t *TPM) checkPCRs(k *SealedKey) error {
	if len(k.PCRs) == 0 || len(k.PCRValues) != len(k.PCRs) {
		return nil
	}
	changed, err := t.changedPCRs(k)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		return &PCRError{Changed: changed}
	}
	return nil
}

func (t *TPM) changedPCRs(k *SealedKey) ([]int, error) {
	if len(k.PCRValues) != len(k.PCRs) {
		return nil, nil
	}
	if _, err := normalisePCRs(k.PCRs); err != nil {
		return nil, fmt.Errorf("corrupt TPM slot: %w", err)
	}
	now, err := t.readPCRs(k.PCRs)
	if err != nil {
		return nil, err
	}
	var changed []int
	for i, p := range k.PCRs {
		if !bytes.Equal(now[i], k.PCRValues[i]) {
			changed = append(changed, p)
		}
	}
	return changed, nil
}

// PCRExtend records data in PCR pcr of every bank (TPM2_PCR_Event: the TPM
// hashes data itself). For tests and diagnostics.
func (t *TPM) PCRExtend(pcr int, data []byte) error {
	if pcr < 0 || pcr >= numPCRs {
		return fmt.Errorf("tpm: extend: PCR %d out of range", pcr)
	}
	if len(data) > 1024 {
		return fmt.Errorf("tpm: extend: event data is %d bytes, at most 1024", len(data))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := tpm2.PCREvent{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		EventData: tpm2.TPM2BEvent{Buffer: data},
	}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", pcr, err)
	}
	return nil
}

// PCRReset resets a resettable PCR (16 or 23 at locality 0) to zeros.
func (t *TPM) PCRReset(pcr int) error {
	if pcr < 0 || pcr >= numPCRs {
		return fmt.Errorf("tpm: reset: PCR %d out of range", pcr)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err := tpm2.PCRReset{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)}}.Execute(t.tpm)
	if err != nil {
		return fmt.Errorf("tpm: reset PCR %d: %w", pcr, err)
	}
	return nil
}

// PCRsGuardPassword reports whether a PCR-bound slot keeps the password out
// of reach while the PCRs differ: no command of the TPM then tells a right
// password from a wrong one. Slots sealed before sealfs made them so fail
// it: a plain one whose object lacks adminWithPolicy (ObjectChangeAuth
// checks the password whatever the PCRs are), a limited one without a gate
// (PolicySecret does; limited.go). A new password re-seals either kind in
// the current form. False for a slot without PCRs, and for a corrupt one.
func (k *SealedKey) PCRsGuardPassword() bool {
	if len(k.PCRs) == 0 {
		return false
	}
	if k.NVIndex != 0 {
		return len(k.GatePublic) > 0
	}
	pub, _, err := parseBlob(k.Public, k.Private)
	if err != nil {
		return false
	}
	c, err := pub.Contents()
	return err == nil && c.ObjectAttributes.AdminWithPolicy && !c.ObjectAttributes.UserWithAuth
}
