package tpm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

const (
	// MaxSecret is the most a KEYEDHASH sealed object holds (MAX_SYM_DATA).
	MaxSecret = 64
	// MaxAuthValue: an authValue may not be longer than the object's name
	// algorithm digest (SHA-256).
	MaxAuthValue = 32
)

// SealedKey is what the vault header's TPM keyslot stores; the caller
// serialises the fields. None of them is secret: Private is encrypted and
// integrity-protected by the TPM under the SRK.
type SealedKey struct {
	Public  []byte // tpm2.Marshal(TPM2BPublic)
	Private []byte // tpm2.Marshal(TPM2BPrivate)
	SRKName []byte // Name of the SRK it was sealed under (see SRKName)
	PCRs    []int  // PCR indexes (SHA-256 bank) bound by policy; empty = password only
	// PCRValues holds the SHA-256 value of each PCRs[i] at seal time, so that
	// a policy failure can name the PCRs that changed. Only diagnostic: the
	// TPM enforces the digest baked into the object's policy.
	PCRValues [][]byte

	// Attempt-limited slots (SealLimited) only; zero otherwise. See limited.go.
	NVIndex  uint32 // handle of the slot's PIN-fail NV index
	NVName   []byte // its Name once written: a replaced index is refused
	MaxTries uint32
	// Attempt-limited slots bound to PCRs: the gate, a sealed object that
	// only the PCR policy opens, holding the secret that the password is
	// mixed with before it reaches the NV index (limited.go, "PCRs").
	GatePublic  []byte
	GatePrivate []byte
}

// Seal creates a sealed object holding secret, protected by authValue and,
// if pcrs is not empty, by the current values of those PCRs. The object is
// DA-protected: wrong passwords count toward the TPM's dictionary-attack
// lockout. authValue must not contain a 0x00 byte (go-tpm v0.9.8 truncates
// HMAC keys there); pass an encoded KDF output.
//
// A PCR-bound object answers only through its policy, PolicyPCR first: with
// other PCR values every password, right or wrong, gets TPM_RC_POLICY_FAIL
// and no DA strike. The object's authValue can never be changed
// (adminWithPolicy with a policy that holds no PolicyCommandCode): with
// adminWithPolicy clear, TPM2_ObjectChangeAuth checks the authValue in an
// HMAC session whatever the PCRs are, which made it a password oracle for
// anyone who boots the machine otherwise (measured on swtpm: it answered
// success or TPM_RC_AUTH_FAIL). A new password means a new object.
func (t *TPM) Seal(secret, authValue []byte, pcrs []int) (*SealedKey, error) {
	pcrs, err := checkSealArgs(secret, authValue, pcrs)
	if err != nil {
		return nil, err
	}
	return t.withSRK(func(s *srk) (*SealedKey, error) { return t.seal(s, secret, authValue, pcrs) })
}

// checkSealArgs validates what Seal and SealLimited are given and returns
// the PCR list sorted and de-duplicated.
func checkSealArgs(secret, authValue []byte, pcrs []int) ([]int, error) {
	if len(secret) == 0 || len(secret) > MaxSecret {
		return nil, fmt.Errorf("tpm: seal: secret must be 1..%d bytes, got %d", MaxSecret, len(secret))
	}
	if err := checkAuthValue(authValue); err != nil {
		return nil, fmt.Errorf("tpm: seal: %w", err)
	}
	pcrs, err := normalisePCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("tpm: seal: %w", err)
	}
	return pcrs, nil
}

// withSRK runs seal under the TPM lock with a fresh SRK, flushed after.
func (t *TPM) withSRK(seal func(s *srk) (*SealedKey, error)) (*SealedKey, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, err := t.createSRK()
	if err != nil {
		return nil, fmt.Errorf("tpm: seal: %w", err)
	}
	defer t.flush(s.handle)
	k, err := seal(s)
	if err != nil {
		return nil, fmt.Errorf("tpm: seal: %w", err)
	}
	return k, nil
}

// seal creates the sealed object under s (errors unprefixed: withSRK adds).
func (t *TPM) seal(s *srk, secret, authValue []byte, pcrs []int) (*SealedKey, error) {
	var err error
	key := &SealedKey{SRKName: bytes.Clone(s.name.Buffer), PCRs: pcrs}
	tmpl := sealTemplate()
	if len(pcrs) > 0 {
		if key.PCRValues, err = t.readPCRs(pcrs); err != nil {
			return nil, err
		}
		policy, err := pcrAuthPolicy(pcrs, key.PCRValues)
		if err != nil {
			return nil, err
		}
		tmpl.ObjectAttributes.UserWithAuth = false // only the policy may authorise: PCRs before the password
		tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: policy}
	}
	if key.Public, key.Private, err = t.create(s, tmpl, secret, authValue); err != nil {
		return nil, err
	}
	return key, nil
}

func sealTemplate() tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:     true,
			FixedParent:  true,
			UserWithAuth: true,
			// The ADMIN role (ObjectChangeAuth) only through a policy with
			// PolicyCommandCode, which no sealfs policy has: never.
			AdminWithPolicy: true,
			NoDA:            false, // wrong passwords must count toward lockout
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash,
			&tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
	}
}

// create makes a sealed object under the SRK. The sensitive part (secret
// and authValue) travels encrypted by a session salted with the SRK.
func (t *TPM) create(s *srk, tmpl tpm2.TPMTPublic, secret, authValue []byte) (pub, priv []byte, err error) {
	sess, closeSess, err := t.saltedSession(s, nil, encryptIn)
	if err != nil {
		return nil, nil, err
	}
	defer closeSess()
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: sess},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			UserAuth: tpm2.TPM2BAuth{Buffer: authValue},
			Data:     tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(tmpl),
	}.Execute(t.tpm)
	if err != nil {
		return nil, nil, fmt.Errorf("creating sealed object: %w", err)
	}
	return tpm2.Marshal(rsp.OutPublic), tpm2.Marshal(rsp.OutPrivate), nil
}

// Unseal returns the secret sealed in k. It re-derives the SRK and compares
// its Name with k.SRKName before any password is used (ErrWrongTPM), and
// checks the bound PCRs before the password is tried, so a changed boot
// state costs no dictionary-attack try. Errors: *AuthError (ErrWrongPassword),
// *LockoutError (ErrLockout), *PCRError (ErrPCRMismatch), ErrWrongTPM.
func (t *TPM) Unseal(k *SealedKey, authValue []byte) ([]byte, error) {
	if k.NVIndex != 0 {
		return nil, errors.New("tpm: unseal: this slot is attempt-limited; use UnsealLimited")
	}
	if err := checkAuthValue(authValue); err != nil {
		return nil, fmt.Errorf("tpm: unseal: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	secret, err := t.unseal(k, func(s *srk, obj *loaded) ([]byte, error) {
		if len(k.PCRs) == 0 {
			return t.unsealHMAC(s, obj, authValue)
		}
		return t.unsealPolicy(s, obj, authValue, func(sess tpm2.Session) error {
			return t.runPCRPolicy(sess, k.PCRs)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("tpm: unseal: %w", err)
	}
	return secret, nil
}

// loaded is a sealed object loaded under the SRK.
type loaded struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
}

// unseal does the steps common to every slot kind and maps TPM errors to
// this package's errors; do runs the authorised Unseal itself.
func (t *TPM) unseal(k *SealedKey, do func(*srk, *loaded) ([]byte, error)) ([]byte, error) {
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
	if err := t.checkPCRs(k); err != nil {
		return nil, err
	}
	obj, err := t.load(s, pub, priv)
	if err != nil {
		return nil, err
	}
	defer t.flush(obj.handle)
	secret, err := do(s, obj)
	if err != nil {
		return nil, t.classify(err, k)
	}
	return secret, nil
}

func (t *TPM) load(s *srk, pub *tpm2.TPM2BPublic, priv *tpm2.TPM2BPrivate) (*loaded, error) {
	// Salted for its response HMAC: it authenticates the returned handle and
	// Name, so an interposer cannot substitute an object of its own.
	sess, closeSess, err := t.saltedSession(s, nil, encryptIn)
	if err != nil {
		return nil, err
	}
	defer closeSess()
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: sess},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(t.tpm)
	if err != nil {
		return nil, fmt.Errorf("loading sealed object (corrupt slot, or sealed on another TPM): %w", err)
	}
	return &loaded{handle: rsp.ObjectHandle, name: rsp.Name}, nil
}

func (t *TPM) unsealHMAC(s *srk, obj *loaded, authValue []byte) ([]byte, error) {
	sess, closeSess, err := t.saltedSession(s, authValue, encryptOut)
	if err != nil {
		return nil, err
	}
	defer closeSess()
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.handle, Name: obj.name, Auth: sess}}.Execute(t.tpm)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(rsp.OutData.Buffer), nil
}

// unsealPolicy unseals in a salted policy session; policy runs the policy
// commands, which must end with the ones that need authValue (if any).
func (t *TPM) unsealPolicy(s *srk, obj *loaded, authValue []byte, policy func(tpm2.Session) error) ([]byte, error) {
	sess, closeSess, err := t.policySession(s, authValue, encryptOut)
	if err != nil {
		return nil, err
	}
	defer closeSess()
	if err := policy(sess); err != nil {
		return nil, err
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.handle, Name: obj.name, Auth: sess}}.Execute(t.tpm)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(rsp.OutData.Buffer), nil
}

// classify turns the TPM's answer to a failed authorisation into an error
// the user can act on.
func (t *TPM) classify(err error, k *SealedKey) error {
	switch {
	case errors.Is(err, tpm2.TPMRCAuthFail):
		info, lerr := t.lockout()
		if lerr != nil {
			t.log.Warn("reading TPM lockout state", "err", lerr)
			return &AuthError{TriesLeft: -1}
		}
		left := int(info.MaxTries) - int(info.Counter)
		return &AuthError{TriesLeft: max(left, 0), LockoutInterval: info.Interval}
	case errors.Is(err, tpm2.TPMRCLockout):
		info, lerr := t.lockout()
		if lerr != nil {
			return &LockoutError{}
		}
		return &LockoutError{RetryIn: info.Interval}
	case errors.Is(err, tpm2.TPMRCPolicyFail):
		changed, _ := t.changedPCRs(k)
		return &PCRError{Changed: changed}
	}
	return err
}

func checkAuthValue(av []byte) error {
	if len(av) > MaxAuthValue {
		return fmt.Errorf("password for the TPM must be at most %d bytes, got %d", MaxAuthValue, len(av))
	}
	// go-tpm v0.9.8 cuts HMAC keys at the first 0x00: such a password would
	// fail forever and burn a dictionary-attack try each time.
	if bytes.IndexByte(av, 0) >= 0 {
		return errors.New("password for the TPM must not contain a 0x00 byte (encode binary KDF output, e.g. base64)")
	}
	return nil
}

// parseBlob decodes a stored slot without trusting it: go-tpm's reflection
// decoder is not hardened, so a panic on corrupt bytes becomes an error.
func parseBlob(pubBytes, privBytes []byte) (pub *tpm2.TPM2BPublic, priv *tpm2.TPM2BPrivate, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt TPM slot: %v", r)
		}
	}()
	if pub, err = tpm2.Unmarshal[tpm2.TPM2BPublic](pubBytes); err != nil {
		return nil, nil, fmt.Errorf("corrupt TPM slot public area: %w", err)
	}
	if _, err = pub.Contents(); err != nil {
		return nil, nil, fmt.Errorf("corrupt TPM slot public area: %w", err)
	}
	if priv, err = tpm2.Unmarshal[tpm2.TPM2BPrivate](privBytes); err != nil {
		return nil, nil, fmt.Errorf("corrupt TPM slot private area: %w", err)
	}
	return pub, priv, nil
}
