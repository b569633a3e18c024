package vault

import "github.com/sealfs/sealfs/crypto"

// Sealer is what the vault needs from a TPM, expressed in the header's own
// blob type so this package (and its tests) do not depend on a TPM being
// present. FromTPM adapts a *tpm.TPM.
type Sealer interface {
	// SRKName identifies the TPM (its storage root key under the owner
	// seed); slots sealed elsewhere carry another name.
	SRKName() ([]byte, error)
	// Seal makes a new slot: attempt-limited when opts.MaxTries > 0.
	Seal(secret, authValue []byte, opts SealOptions) (*crypto.TPMBlob, error)
	// Unseal returns the secret. It never changes b: even attempt-limited
	// slots keep their count inside the TPM (tpm/limited.go), so a failed
	// or successful unlock leaves the header as it was.
	Unseal(b *crypto.TPMBlob, authValue []byte) ([]byte, error)
	// Delete frees what b holds inside the TPM, so that b never opens
	// again: the NV index of an attempt-limited slot. A plain slot holds
	// nothing there (nil). An index already gone is not an error.
	Delete(b *crypto.TPMBlob) error
	// TriesLeft reports how many consecutive wrong passwords an
	// attempt-limited slot still tolerates, without trying one.
	TriesLeft(b *crypto.TPMBlob) (left, max int, err error)
}

// SealOptions select the policy of a new TPM slot.
type SealOptions struct {
	PCRs     []int  // bind to these SHA-256 PCRs as well as the password
	MaxTries uint32 // >0: attempt-limited slot (issue 7, tpm/limited.go)
}

// Limited reports whether b is an attempt-limited slot.
func Limited(b *crypto.TPMBlob) bool { return b != nil && b.NVIndex != 0 }

// newKDFParams makes a new slot's KDF parameters; the package's tests swap
// in a cheap cost (the cost itself is crypto's to test).
var newKDFParams = crypto.NewKDFParams
