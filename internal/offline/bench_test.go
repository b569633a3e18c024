package offline

import (
	"encoding/hex"
	"os"
	"testing"

	"github.com/sealfs/sealfs/crypto"
)

// The tree benchmarks verify and extract a real tree (for instance Go's own
// source: SEALFS_BENCH_TREE=/usr/local/go/src), encrypted once into
// SEALFS_BENCH_VAULT (kept, with its master key beside it, so strace and
// repeated runs measure only Check or Extract). Skipped when unset.
func benchVault(b *testing.B) (*crypto.Keys, string) {
	tree, dir := os.Getenv("SEALFS_BENCH_TREE"), os.Getenv("SEALFS_BENCH_VAULT")
	if tree == "" || dir == "" {
		b.Skip("set SEALFS_BENCH_TREE (a plaintext tree) and SEALFS_BENCH_VAULT (where to keep its vault)")
	}
	keyFile := dir + ".key"
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		m, err := crypto.NewMasterKey()
		if err != nil {
			b.Fatal(err)
		}
		raw = []byte(hex.EncodeToString(m.Bytes()))
		m.Wipe()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		defer func() {
			if err := os.WriteFile(keyFile, raw, 0o600); err != nil {
				b.Fatal(err)
			}
		}()
	}
	mk, err := hex.DecodeString(string(raw))
	if err != nil {
		b.Fatal(err)
	}
	m, err := crypto.MasterKeyFromBytes(mk)
	if err != nil {
		b.Fatal(err)
	}
	keys, err := crypto.DeriveKeys(m)
	m.Wipe()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(keys.Wipe)
	if _, err := os.Stat(keyFile); err != nil {
		newTestVault(b, dir, keys).importTree(tree, "")
	}
	return keys, dir
}

func BenchmarkCheckTree(b *testing.B) {
	keys, dir := benchVault(b)
	b.SetBytes(TotalBytes(dir))
	b.ResetTimer()
	for range b.N {
		r, err := Check(keys, dir, nil)
		if err != nil || !r.OK() {
			b.Fatalf("check: %v %v", err, r.Problems)
		}
	}
}

// BenchmarkExtractTree extracts into fresh directories below
// SEALFS_BENCH_DEST when set, and leaves them there, so that a syscall count
// holds the extraction only (the caller removes them); otherwise into
// temporary directories removed between iterations.
func BenchmarkExtractTree(b *testing.B) {
	keys, dir := benchVault(b)
	keep := os.Getenv("SEALFS_BENCH_DEST")
	b.SetBytes(TotalBytes(dir))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dest := b.TempDir()
		if keep != "" {
			var err error
			if dest, err = os.MkdirTemp(keep, "extract-"); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		r, err := Extract(ExtractOptions{Keys: keys, CipherDir: dir, Dest: dest})
		if err != nil || !r.OK() {
			b.Fatalf("extract: %v %v", err, r.Problems)
		}
		if keep == "" {
			b.StopTimer()
			if err := os.RemoveAll(dest); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}
