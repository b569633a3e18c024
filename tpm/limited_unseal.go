package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// UnsealLimited returns the secret of a slot made by SealLimited. Every
// wrong password costs one of the slot's tries, counted by the TPM; the
// right one restores all of them, in the same TPM command, so the slot on
// disk never changes. Errors: *TriesError (ErrWrongPassword; also
// ErrTriesExhausted when it was the last try), ErrTriesExhausted,
// ErrTriesUsedUp (exhausted by another program during this call),
// *PCRError, ErrWrongTPM, ErrSlotGone. Neither exhaustion nor a PCR
// mismatch is tried against the TPM, so they cost nothing.
func (t *TPM) UnsealLimited(k *SealedKey, authValue []byte) ([]byte, error) {
	if k.NVIndex == 0 {
		return nil, errors.New("tpm: unseal: not an attempt-limited slot; use Unseal")
	}
	if err := checkAuthValue(authValue); err != nil {
		return nil, fmt.Errorf("tpm: unseal: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	secret, err := t.unsealLimited(k, authValue)
	if err != nil {
		return nil, fmt.Errorf("tpm: unseal: %w", err)
	}
	return secret, nil
}

func (t *TPM) unsealLimited(k *SealedKey, authValue []byte) ([]byte, error) {
	pub, priv, err := parseBlob(k.Public, k.Private)
	if err != nil {
		return nil, err
	}
	s, err := t.createSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(s.handle)
	if !bytes.Equal(s.name.Buffer, k.SRKName) {
		return nil, ErrWrongTPM
	}
	nv, err := t.pinIndex(k)
	if err != nil {
		return nil, err
	}
	count, limit, err := t.readPinIndex(nv)
	if err != nil {
		return nil, err
	}
	if count >= limit {
		return nil, ErrTriesExhausted
	}
	if err := t.checkPCRs(k); err != nil {
		return nil, err
	}
	pinAuth := authValue
	if len(k.GatePublic) > 0 {
		gate, err := t.openGate(s, k)
		if err != nil {
			return nil, err
		}
		pinAuth = gatedAuth(authValue, gate)
		clear(gate)
		defer clear(pinAuth)
	}
	obj, err := t.load(s, pub, priv)
	if err != nil {
		return nil, err
	}
	defer t.flush(obj.handle)
	if beforePinSecret != nil {
		beforePinSecret(t, nv)
	}
	secret, err := t.unsealPolicy(s, obj, nil, func(sess tpm2.Session) error {
		if err := t.pinSecret(s, nv, sess, pinAuth); err != nil {
			return t.classifyPin(err, nv)
		}
		if len(k.PCRs) == 0 {
			return nil
		}
		_, err := tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(k.PCRs)}.Execute(t.tpm)
		return err
	})
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		// The password was right (PolicySecret passed): only the PCRs remain.
		changed, _ := t.changedPCRs(k)
		return nil, &PCRError{Changed: changed}
	}
	return secret, err
}

// beforePinSecret, when set by a test, runs between sealfs's own look at
// the try count and the PolicySecret that spends a try: the window in which
// another program may use the last tries up.
var beforePinSecret func(t *TPM, nv tpm2.NamedHandle)

// openGate unseals a PCR-bound limited slot's gate secret. With other PCR
// values the TPM refuses (TPM_RC_POLICY_FAIL) before any password is
// involved, and nothing is counted.
func (t *TPM) openGate(s *srk, k *SealedKey) ([]byte, error) {
	pub, priv, err := parseBlob(k.GatePublic, k.GatePrivate)
	if err != nil {
		return nil, fmt.Errorf("PCR gate: %w", err)
	}
	gate, err := t.load(s, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("PCR gate: %w", err)
	}
	defer t.flush(gate.handle)
	secret, err := t.unsealPolicy(s, gate, nil, func(sess tpm2.Session) error {
		_, err := tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: pcrSelection(k.PCRs)}.Execute(t.tpm)
		return err
	})
	if errors.Is(err, tpm2.TPMRCPolicyFail) {
		changed, _ := t.changedPCRs(k)
		return nil, &PCRError{Changed: changed}
	}
	if err != nil {
		return nil, fmt.Errorf("opening the slot's PCR gate: %w", err)
	}
	if len(secret) != gateSize {
		clear(secret)
		return nil, fmt.Errorf("the slot's PCR gate holds %d bytes, want %d", len(secret), gateSize)
	}
	return secret, nil
}

// pinSecret runs PolicySecret with the PIN index in the policy session: the
// one step where the TPM checks the password and counts a failure.
func (t *TPM) pinSecret(s *srk, nv tpm2.NamedHandle, sess tpm2.Session, authValue []byte) error {
	pw, closePw, err := t.saltedSession(s, authValue, encryptIn)
	if err != nil {
		return err
	}
	defer closePw()
	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: pw},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}.Execute(t.tpm)
	return err
}

func (t *TPM) classifyPin(err error, nv tpm2.NamedHandle) error {
	switch {
	case errors.Is(err, tpm2.TPMRCAuthFail), errors.Is(err, tpm2.TPMRCBadAuth):
		count, limit, rerr := t.readPinIndex(nv)
		if rerr != nil {
			return errors.Join(ErrWrongPassword, rerr)
		}
		return &TriesError{Left: int(limit) - int(min(count, limit)), Max: int(limit)}
	case errors.Is(err, tpm2.TPMRCAuthUnavailable), errors.Is(err, tpm2.TPMRCNVAuthorization):
		// pinCount reached pinLimit after sealfs read it: another program
		// (or another sealfs) used the last tries up in between. The TPM
		// counted nothing for this attempt.
		return ErrTriesUsedUp
	}
	return fmt.Errorf("PolicySecret(NV index %#x): %w", uint32(nv.Handle), err)
}

// pinIndex checks that the slot's NV index is still the one SealLimited
// wrote, before any password is sent to it.
func (t *TPM) pinIndex(k *SealedKey) (tpm2.NamedHandle, error) {
	h := tpm2.TPMHandle(k.NVIndex)
	if h < nvFirst || h > nvLast {
		return tpm2.NamedHandle{}, fmt.Errorf("corrupt TPM slot: NV index %#x outside sealfs's range", k.NVIndex)
	}
	rsp, err := tpm2.NVReadPublic{NVIndex: h}.Execute(t.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return tpm2.NamedHandle{}, ErrSlotGone
	}
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("reading NV index %#x: %w", k.NVIndex, err)
	}
	if !bytes.Equal(rsp.NVName.Buffer, k.NVName) {
		return tpm2.NamedHandle{}, ErrSlotGone
	}
	return tpm2.NamedHandle{Handle: h, Name: rsp.NVName}, nil
}

// readPinIndex returns the failure count and the limit (TPMS_NV_PIN_COUNTER_PARAMETERS).
func (t *TPM) readPinIndex(nv tpm2.NamedHandle) (count, limit uint32, err error) {
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    nv,
		Size:       8,
	}.Execute(t.tpm)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the try count (owner hierarchy): %w", err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, 0, fmt.Errorf("reading the try count: got %d bytes, want 8", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint32(rsp.Data.Buffer), binary.BigEndian.Uint32(rsp.Data.Buffer[4:]), nil
}

// TriesLeft reports how many wrong passwords an attempt-limited slot still
// tolerates, without trying one.
func (t *TPM) TriesLeft(k *SealedKey) (left, max int, err error) {
	if k.NVIndex == 0 {
		return 0, 0, errors.New("tpm: not an attempt-limited slot")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	nv, err := t.pinIndex(k)
	if err != nil {
		return 0, 0, fmt.Errorf("tpm: %w", err)
	}
	count, limit, err := t.readPinIndex(nv)
	if err != nil {
		return 0, 0, fmt.Errorf("tpm: %w", err)
	}
	return int(limit) - int(min(count, limit)), int(limit), nil
}

// DeleteLimited frees the slot's NV index; the slot can never open again.
// An index that is already gone, or was replaced by another, is left alone.
func (t *TPM) DeleteLimited(k *SealedKey) error {
	if k.NVIndex == 0 {
		return errors.New("tpm: not an attempt-limited slot")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	nv, err := t.pinIndex(k)
	if errors.Is(err, ErrSlotGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tpm: delete slot: %w", err)
	}
	s, err := t.createSRK()
	if err != nil {
		return fmt.Errorf("tpm: delete slot: %w", err)
	}
	defer t.flush(s.handle)
	if err := t.undefine(s, nv); err != nil {
		return fmt.Errorf("tpm: delete slot: NV index %#x: %w", k.NVIndex, err)
	}
	return nil
}
