package vault

import (
	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// FromTPM adapts a TPM connection to the Sealer the vault uses.
func FromTPM(t *tpm.TPM) Sealer { return tpmSealer{t} }

type tpmSealer struct{ t *tpm.TPM }

func (s tpmSealer) SRKName() ([]byte, error) { return s.t.SRKName() }

func (s tpmSealer) Seal(secret, authValue []byte, opts SealOptions) (*crypto.TPMBlob, error) {
	var k *tpm.SealedKey
	var err error
	if opts.MaxTries > 0 {
		k, err = s.t.SealLimited(secret, authValue, opts.PCRs, int(opts.MaxTries))
	} else {
		k, err = s.t.Seal(secret, authValue, opts.PCRs)
	}
	if err != nil {
		return nil, err
	}
	return toBlob(k), nil
}

func (s tpmSealer) Unseal(b *crypto.TPMBlob, authValue []byte) ([]byte, error) {
	if Limited(b) {
		return s.t.UnsealLimited(fromBlob(b), authValue)
	}
	return s.t.Unseal(fromBlob(b), authValue)
}

func (s tpmSealer) Delete(b *crypto.TPMBlob) error {
	if !Limited(b) {
		return nil
	}
	return s.t.DeleteLimited(fromBlob(b))
}

func (s tpmSealer) TriesLeft(b *crypto.TPMBlob) (left, max int, err error) {
	return s.t.TriesLeft(fromBlob(b))
}

func toBlob(k *tpm.SealedKey) *crypto.TPMBlob {
	return &crypto.TPMBlob{
		Public: k.Public, Private: k.Private, SRKName: k.SRKName,
		PCRs: k.PCRs, PCRValues: k.PCRValues,
		NVIndex: k.NVIndex, NVName: k.NVName, MaxTries: k.MaxTries,
		GatePublic: k.GatePublic, GatePrivate: k.GatePrivate,
	}
}

func fromBlob(b *crypto.TPMBlob) *tpm.SealedKey {
	return &tpm.SealedKey{
		Public: b.Public, Private: b.Private, SRKName: b.SRKName,
		PCRs: b.PCRs, PCRValues: b.PCRValues,
		NVIndex: b.NVIndex, NVName: b.NVName, MaxTries: b.MaxTries,
		GatePublic: b.GatePublic, GatePrivate: b.GatePrivate,
	}
}

// PCRsGuardPassword reports whether a PCR-bound slot answers no password
// while its PCRs differ (tpm.SealedKey.PCRsGuardPassword).
func PCRsGuardPassword(b *crypto.TPMBlob) bool { return fromBlob(b).PCRsGuardPassword() }
