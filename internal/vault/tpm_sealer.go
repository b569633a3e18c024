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
		// tpm.SealLimited exists, but its key carries the PIN index's Name,
		// which UnsealLimited insists on and crypto.TPMBlob cannot store yet
		// (no nv_name field): a slot made now could never open.
		return nil, errors.New("attempt-limited TPM slots (--max-tries) need vault format support that is not in this build yet")
	}
	k, err := s.t.Seal(secret, authValue, opts.PCRs)
	if err != nil {
		return nil, err
	}
	return toBlob(k), nil
}

func (s tpmSealer) Unseal(b *crypto.TPMBlob, authValue []byte) ([]byte, error) {
	return s.t.Unseal(fromBlob(b), authValue)
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
