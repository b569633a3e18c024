package vault

import (
	"errors"

	"github.com/sealfs/sealfs/crypto"
	"github.com/sealfs/sealfs/tpm"
)

// FromTPM adapts a TPM connection to the Sealer the vault uses.
func FromTPM(t *tpm.TPM) Sealer { return tpmSealer{t} }

type tpmSealer struct{ t *tpm.TPM }

func (s tpmSealer) SRKName() ([]byte, error) { return s.t.SRKName() }

func (s tpmSealer) Seal(secret, authValue []byte, opts SealOptions) (*crypto.TPMBlob, error) {
	if opts.MaxTries > 0 {
		return nil, errors.New("attempt-limited TPM slots (--max-tries) are not available in this build yet")
	}
	k, err := s.t.Seal(secret, authValue, opts.PCRs)
	if err != nil {
		return nil, err
	}
	return toBlob(k), nil
}

func (s tpmSealer) Unseal(b *crypto.TPMBlob, authValue []byte) ([]byte, *crypto.TPMBlob, error) {
	secret, err := s.t.Unseal(fromBlob(b), authValue)
	return secret, nil, err
}

func (s tpmSealer) ChangeAuth(b *crypto.TPMBlob, oldAuth, newAuth []byte) (*crypto.TPMBlob, error) {
	k, err := s.t.ChangeAuth(fromBlob(b), oldAuth, newAuth)
	if err != nil {
		return nil, err
	}
	return toBlob(k), nil
}

func toBlob(k *tpm.SealedKey) *crypto.TPMBlob {
	return &crypto.TPMBlob{
		Public: k.Public, Private: k.Private, SRKName: k.SRKName,
		PCRs: k.PCRs, PCRValues: k.PCRValues, NVIndex: k.NVIndex, MaxTries: k.MaxTries,
	}
}

func fromBlob(b *crypto.TPMBlob) *tpm.SealedKey {
	return &tpm.SealedKey{
		Public: b.Public, Private: b.Private, SRKName: b.SRKName,
		PCRs: b.PCRs, PCRValues: b.PCRValues, NVIndex: b.NVIndex, MaxTries: b.MaxTries,
	}
}
