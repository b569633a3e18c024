package tpm

// Attempt-limited slots: after MaxTries consecutive wrong passwords the TPM
// path is gone for good; only the recovery key opens the vault.
//
// # Design
//
// The password is not the sealed object's authValue but the authValue of a
// PIN-fail NV index (TPM_NT_PIN_FAIL, Part 1 §37.2, Part 2 §13.2) that
// SealLimited defines for the slot. Such an index holds {pinCount, pinLimit}
// and the TPM itself, in the same command that checks the password:
//
//   - increments pinCount when an authorisation with the index's authValue fails,
//   - refuses the authValue, even the right one, once pinCount ≥ pinLimit,
//   - sets pinCount back to 0 when an authorisation succeeds.
//
// The sealed object (no authValue, userWithAuth and adminWithPolicy so only
// its policy opens it) has the policy
//
//	PolicySecret(PIN index) [∧ PolicyPCR(pcrs)]
//
// so every unseal needs a successful authorisation with the PIN index's
// authValue, and every guess that fails is counted by the TPM before it
// answers. Nothing depends on the client's good will: a program that talks
// to the TPM directly gets exactly the same MaxTries guesses. A success
// re-arms the slot to MaxTries without rewriting anything on disk, and there
// is no window between counting and checking that a crash could exploit: a
// crash costs at most the one try that was being made. (The counter design
// "NV_Increment, then unseal under PolicyNV(counter < bound)" was rejected:
// the increment is voluntary, so an attacker simply skips it and is left
// with the DA lockout only.)
//
// The index is readable by the owner hierarchy (TPMA_NV_OWNERREAD: the count
// is no secret, and sealfs needs empty owner auth for the SRK anyway) and
// writable only through its authPolicy
//
//	PolicySecret(admin) ∧ PolicyCommandCode(NV_Write)
//
// where admin is a throwaway object with a random authValue: SealLimited uses
// it to write {0, MaxTries} and forgets it. No one can ever write the index
// again, so no one can reset the count. An owner who undefines the index and
// defines a look-alike (same public area, own authValue) cannot write it, and
// an unwritten index has another Name (TPMA_NV_WRITTEN is part of it), so
// the object's PolicySecret can no longer be satisfied.
//
// # DA lockout
//
// The TPM requires TPMA_NV_NO_DA on PIN-fail indices, and the object has no
// authValue, so limited slots neither use nor disturb the TPM-wide
// dictionary-attack counter: a typo does not lock other TPM users out, and
// there is no time-based throttling either, only the hard limit of MaxTries.
//
// # Limits
//
//   - Owner hierarchy: whoever holds owner authorisation (empty by default on
//     Linux, so anyone who may open /dev/tpmrm0) can undefine the index. That
//     destroys the slot (denial of service, like a TPM clear); it never opens
//     it. TPM2_Clear does the same and also changes the SRK.
//   - Root on the running machine can read the master key from a mounted
//     vault's memory; no TPM policy helps against that.
//   - swtpm: whoever copies the state directory can restore it and get
//     MaxTries fresh guesses per copy (rollback). A software TPM limits
//     nothing against someone who can read its files.
//   - The NV index is not TPMA_NV_ORDERLY on purpose: an orderly index keeps
//     pinCount in RAM, and cutting power would roll failures back. Each
//     failure is one NV write, which real TPMs tolerate at unlock rates.
//   - Each slot uses one NV index (8 bytes + metadata) until DeleteLimited.
//   - Changing the password means SealLimited with the new one and
//     DeleteLimited of the old slot.
//
// # PCRs
//
// PolicySecret checks the PIN index's authValue whatever the PCRs hold, and
// its answer (TPM_RC_BAD_AUTH or success) tells a right password from a
// wrong one: bound to PCRs by the object's policy alone, a limited slot
// would still let whoever boots the machine otherwise test up to MaxTries
// passwords. So a PCR-bound limited slot has a gate: a second sealed object
// (no authValue, noDA, opened only by PolicyPCR of the same PCRs) holding 32
// random bytes, and the index's authValue is
//
//	base64(HMAC-SHA256(gate secret, authValue)[:24])
//
// With other PCR values the gate does not open (TPM_RC_POLICY_FAIL, no
// count), and without its secret every guess, the right password included,
// is a guess at a 192-bit value: the TPM refuses them all alike. Each such
// guess still uses up one try (denial of service, as anyone who may use the
// TPM can do anyway); none tells anything about the password.

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"

	"github.com/google/go-tpm/tpm2"
)

// NV indexes that sealfs allocates come from the range the TCG registry
// leaves unassigned for owner use (0x01800000–0x01BFFFFF), as systemd does.
const (
	nvFirst = 0x01800000
	nvLast  = 0x01BFFFFF
	// MaxTriesLimit bounds maxTries: beyond it a limit stops being one.
	MaxTriesLimit = 1000
)

// SealLimited seals secret like Seal, but behind a PIN-fail NV index that
// allows maxTries consecutive wrong passwords before the slot is unusable
// for good. The returned key carries NVIndex, NVName and MaxTries.
func (t *TPM) SealLimited(secret, authValue []byte, pcrs []int, maxTries int) (*SealedKey, error) {
	if maxTries < 1 || maxTries > MaxTriesLimit {
		return nil, fmt.Errorf("tpm: seal: maxTries must be 1..%d, got %d", MaxTriesLimit, maxTries)
	}
	pcrs, err := checkSealArgs(secret, authValue, pcrs)
	if err != nil {
		return nil, err
	}
	return t.withSRK(func(s *srk) (*SealedKey, error) {
		return t.sealLimited(s, secret, authValue, pcrs, uint32(maxTries))
	})
}

func (t *TPM) sealLimited(s *srk, secret, authValue []byte, pcrs []int, maxTries uint32) (*SealedKey, error) {
	k := &SealedKey{SRKName: bytes.Clone(s.name.Buffer), PCRs: pcrs, MaxTries: maxTries}
	pinAuth := authValue
	var pcrPolicy *tpm2.PolicyPCR
	if len(pcrs) > 0 {
		var err error
		if k.PCRValues, err = t.readPCRs(pcrs); err != nil {
			return nil, err
		}
		pcrPolicy = &tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: pcrDigest(k.PCRValues)}, Pcrs: pcrSelection(pcrs)}
		gate := make([]byte, gateSize)
		defer clear(gate)
		if _, err := rand.Read(gate); err != nil {
			return nil, err
		}
		if k.GatePublic, k.GatePrivate, err = t.sealGate(s, pcrPolicy, gate); err != nil {
			return nil, err
		}
		pinAuth = gatedAuth(authValue, gate)
		defer clear(pinAuth)
	}
	nv, err := t.definePinIndex(s, pinAuth, maxTries)
	if err != nil {
		return nil, err
	}
	k.NVIndex, k.NVName = uint32(nv.Handle), bytes.Clone(nv.Name.Buffer)
	undefine := func(cause error) error {
		if uerr := t.undefine(s, nv); uerr != nil {
			return errors.Join(cause, fmt.Errorf("removing NV index %#x again: %w", uint32(nv.Handle), uerr))
		}
		return cause
	}
	policy, err := limitedPolicy(nv, pcrPolicy)
	if err != nil {
		return nil, undefine(err)
	}
	tmpl := sealTemplate()
	tmpl.ObjectAttributes.UserWithAuth = false
	tmpl.ObjectAttributes.NoDA = true // no authValue to guess; the PIN index counts
	tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: policy}
	if k.Public, k.Private, err = t.create(s, tmpl, secret, nil); err != nil {
		return nil, undefine(err)
	}
	return k, nil
}

// gateSize is the size of a gate's secret (see "PCRs" above).
const gateSize = 32

// sealGate seals a PCR-bound limited slot's gate secret: no authValue, no
// DA, opened only by the PCR policy.
func (t *TPM) sealGate(s *srk, pcr *tpm2.PolicyPCR, gate []byte) (pub, priv []byte, err error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, nil, err
	}
	if err := pcr.Update(calc); err != nil {
		return nil, nil, err
	}
	tmpl := sealTemplate()
	tmpl.ObjectAttributes.UserWithAuth = false
	tmpl.ObjectAttributes.NoDA = true // nothing to guess: the PCRs either match or not
	tmpl.AuthPolicy = tpm2.TPM2BDigest{Buffer: calc.Hash().Digest}
	if pub, priv, err = t.create(s, tmpl, gate, nil); err != nil {
		return nil, nil, fmt.Errorf("sealing the slot's PCR gate: %w", err)
	}
	return pub, priv, nil
}

// gatedAuth is the PIN index's authValue of a PCR-bound limited slot: the
// password's authValue keyed with the gate secret, base64 so that it holds
// no 0x00 byte (32 ASCII bytes, the most an authValue may have).
func gatedAuth(authValue, gate []byte) []byte {
	m := hmac.New(sha256.New, gate)
	m.Write(authValue)
	sum := m.Sum(nil)
	defer clear(sum)
	out := make([]byte, base64.StdEncoding.EncodedLen(24))
	base64.StdEncoding.Encode(out, sum[:24])
	return out
}

// limitedPolicy is the sealed object's policy: PolicySecret(PIN index), then
// PolicyPCR if pcr is not nil.
func limitedPolicy(nv tpm2.NamedHandle, pcr *tpm2.PolicyPCR) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicySecret{AuthHandle: nv}).Update(calc); err != nil {
		return nil, err
	}
	if pcr != nil {
		if err := pcr.Update(calc); err != nil {
			return nil, err
		}
	}
	return calc.Hash().Digest, nil
}

// writePolicy is the PIN index's authPolicy: only whoever knows admin's
// authValue may write it.
func writePolicy(admin tpm2.TPM2BName) ([]byte, error) {
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicySecret{AuthHandle: tpm2.NamedHandle{Name: admin}}).Update(calc); err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyCommandCode{Code: tpm2.TPMCCNVWrite}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// definePinIndex defines the slot's PIN-fail index with authValue as its
// password, writes {0, maxTries} once through a throwaway admin object and
// returns the index with its final (written) Name.
func (t *TPM) definePinIndex(s *srk, authValue []byte, maxTries uint32) (tpm2.NamedHandle, error) {
	adminAuth := make([]byte, 24)
	if _, err := rand.Read(adminAuth); err != nil {
		return tpm2.NamedHandle{}, err
	}
	// ASCII, because go-tpm cuts HMAC keys at a 0x00 byte.
	adminAuth = []byte(base64.RawStdEncoding.EncodeToString(adminAuth))
	adminPub, adminPriv, err := t.create(s, tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true, NoDA: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash,
			&tpm2.TPMSKeyedHashParms{Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull}}),
	}, []byte{1}, adminAuth)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("creating the NV index's one-time writer: %w", err)
	}
	pub, priv, err := parseBlob(adminPub, adminPriv)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	admin, err := t.load(s, pub, priv)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	defer t.flush(admin.handle)

	authPolicy, err := writePolicy(admin.name)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	nv, err := t.defineSpace(s, authValue, authPolicy)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	if err := t.writePinIndex(s, nv, admin, adminAuth, maxTries); err != nil {
		return tpm2.NamedHandle{}, errors.Join(err, t.undefine(s, nv))
	}
	rsp, err := tpm2.NVReadPublic{NVIndex: nv.Handle}.Execute(t.tpm)
	if err != nil {
		return tpm2.NamedHandle{}, errors.Join(fmt.Errorf("reading NV index public area: %w", err), t.undefine(s, nv))
	}
	nv.Name = rsp.NVName
	return nv, nil
}

// defineSpace picks a free index at random in sealfs's range and defines it.
func (t *TPM) defineSpace(s *srk, authValue, authPolicy []byte) (tpm2.NamedHandle, error) {
	for range 16 {
		h := tpm2.TPMHandle(nvFirst + mrand.IntN(nvLast-nvFirst+1))
		pub := tpm2.TPMSNVPublic{
			NVIndex: h,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				NT:          tpm2.TPMNTPinFail,
				PolicyWrite: true,
				OwnerRead:   true,
				NoDA:        true, // required for PIN-fail indexes; they count failures themselves
			},
			AuthPolicy: tpm2.TPM2BDigest{Buffer: authPolicy},
			DataSize:   8,
		}
		sess, closeSess, err := t.saltedSession(s, nil, encryptIn) // the password travels encrypted
		if err != nil {
			return tpm2.NamedHandle{}, err
		}
		_, err = tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: sess},
			Auth:       tpm2.TPM2BAuth{Buffer: authValue},
			PublicInfo: tpm2.New2B(pub),
		}.Execute(t.tpm)
		closeSess()
		if errors.Is(err, tpm2.TPMRCNVDefined) {
			continue
		}
		if err != nil {
			return tpm2.NamedHandle{}, fmt.Errorf("defining NV index %#x (owner hierarchy): %w", uint32(h), err)
		}
		name, err := tpm2.NVName(&pub)
		if err != nil {
			return tpm2.NamedHandle{}, errors.Join(err, t.undefine(s, tpm2.NamedHandle{Handle: h}))
		}
		return tpm2.NamedHandle{Handle: h, Name: *name}, nil
	}
	return tpm2.NamedHandle{}, errors.New("no free NV index in 0x01800000-0x01BFFFFF after 16 tries")
}

func (t *TPM) writePinIndex(s *srk, nv tpm2.NamedHandle, admin *loaded, adminAuth []byte, maxTries uint32) error {
	// Not parameter-encrypted: the TPM keys a policy session's encryption
	// with the index's authValue (the user's password), which go-tpm would
	// also mix into the HMAC. {0, maxTries} is no secret, and the salted
	// HMAC still protects it from tampering.
	sess, closeSess, err := t.policySession(s, nil, nil)
	if err != nil {
		return err
	}
	defer closeSess()
	adminSess, closeAdmin, err := t.saltedSession(s, adminAuth, encryptIn)
	if err != nil {
		return err
	}
	defer closeAdmin()
	if _, err := (tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: admin.handle, Name: admin.name, Auth: adminSess},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}).Execute(t.tpm); err != nil {
		return fmt.Errorf("PolicySecret(writer): %w", err)
	}
	if _, err := (tpm2.PolicyCommandCode{PolicySession: sess.Handle(), Code: tpm2.TPMCCNVWrite}).Execute(t.tpm); err != nil {
		return fmt.Errorf("PolicyCommandCode: %w", err)
	}
	data := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 0), maxTries)
	if _, err := (tpm2.NVWrite{
		AuthHandle: tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: sess},
		NVIndex:    nv,
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data},
	}).Execute(t.tpm); err != nil {
		return fmt.Errorf("writing the try limit: %w", err)
	}
	return nil
}

func (t *TPM) undefine(s *srk, nv tpm2.NamedHandle) error {
	sess, closeSess, err := t.saltedSession(s, nil, nil) // NV_UndefineSpace has no parameters
	if err != nil {
		return err
	}
	defer closeSess()
	_, err = tpm2.NVUndefineSpace{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: sess}, NVIndex: nv}.Execute(t.tpm)
	return err
}
