package tpm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// srk is a transient handle to the storage root key: ECC P-256 from
// tpm2.ECCSRKTemplate under the owner hierarchy. It is re-derived from the
// owner seed on every use rather than persisted, so sealfs leaves no
// persistent handle behind (ECC CreatePrimary costs ≈ 0.5 ms on swtpm).
type srk struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
}

// createSRK needs the owner hierarchy's authValue to be empty, which is the
// default on Linux machines.
func (t *TPM) createSRK() (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("creating the storage root key (owner hierarchy): %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.flush(rsp.ObjectHandle)
		return nil, fmt.Errorf("parsing the storage root key: %w", err)
	}
	// Sessions are salted to pub, while callers pin rsp.Name: the two must
	// describe one key, or an interposer could answer with the genuine Name
	// and a public key of its own, pass the SRK Name check and read every
	// salted session (the authValue HMACs and the unsealed key).
	name, err := tpm2.ObjectName(pub)
	if err != nil || !bytes.Equal(name.Buffer, rsp.Name.Buffer) {
		t.flush(rsp.ObjectHandle)
		return nil, errors.New("the storage root key's public area does not match its Name: the TPM's answer was tampered with")
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, public: *pub}, nil
}

func (t *TPM) flush(h tpm2.TPMHandle) {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t.tpm); err != nil {
		t.log.Warn("flushing TPM handle", "handle", fmt.Sprintf("%#x", uint32(h)), "err", err)
	}
}

// SRKName returns the Name of this TPM's storage root key. A slot whose
// SRKName differs was sealed on another TPM (or before a TPM clear).
func (t *TPM) SRKName() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.createSRK()
	if err != nil {
		return nil, fmt.Errorf("tpm: %w", err)
	}
	t.flush(s.handle)
	return bytes.Clone(s.name.Buffer), nil
}

// saltedSession opens an HMAC session salted with the SRK: its session key
// comes from a secret encrypted to the SRK, so a bus sniffer cannot
// brute-force auth from the HMACs, and an interposer cannot read the
// encrypted parameters. dir is nil for commands without a 2B first
// parameter (the TPM refuses a decrypt session there: TPM_RC_ATTRIBUTES).
// The caller must call the returned close function.
func (t *TPM) saltedSession(s *srk, auth []byte, dir tpm2.AuthOption) (tpm2.Session, func(), error) {
	opts := []tpm2.AuthOption{tpm2.Auth(auth), tpm2.Salted(s.handle, s.public)}
	if dir != nil {
		opts = append(opts, dir)
	}
	sess, closer, err := tpm2.HMACSession(t.tpm, tpm2.TPMAlgSHA256, 16, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("starting salted session: %w", err)
	}
	return sess, func() {
		if err := closer(); err != nil {
			t.log.Warn("flushing TPM session", "err", err)
		}
	}, nil
}

// policySession is saltedSession for policy sessions; the policy commands
// are up to the caller. dir may be nil for no parameter encryption.
func (t *TPM) policySession(s *srk, auth []byte, dir tpm2.AuthOption) (tpm2.Session, func(), error) {
	opts := []tpm2.AuthOption{tpm2.Salted(s.handle, s.public)}
	if dir != nil {
		opts = append(opts, dir)
	}
	if auth != nil {
		opts = append(opts, tpm2.Auth(auth))
	}
	sess, closer, err := tpm2.PolicySession(t.tpm, tpm2.TPMAlgSHA256, 16, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("starting policy session: %w", err)
	}
	return sess, func() {
		if err := closer(); err != nil {
			t.log.Warn("flushing TPM session", "err", err)
		}
	}, nil
}

var (
	encryptIn  = tpm2.AESEncryption(128, tpm2.EncryptIn)
	encryptOut = tpm2.AESEncryption(128, tpm2.EncryptOut)
)
