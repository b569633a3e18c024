package cipherfile

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

var (
	modelSeed  = flag.Uint64("model.seed", 0, "seed for TestModel (0: time-based)")
	modelTrace = flag.Bool("model.trace", false, "log every TestModel operation")
	modelOps   = flag.Int("model.ops", 0, "operations per TestModel run (0: 3000, 800 under -race)")
)

// model drives a File and an in-memory byte slice with the same random
// operations and compares them after every step; after every Flush the cipher
// file must decrypt with crypto.DecryptReader to exactly the model, which
// proves that blocks are sealed with the right index and final flag.
type model struct {
	t    *testing.T
	e    *env
	f    *File
	want []byte
	rng  *rand.Rand
}

func TestModel(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -model.seed=%d)", seed, seed)
	m := &model{t: t, e: newEnv(t), rng: rand.New(rand.NewPCG(seed, seed^0x5ea1))}
	m.f = m.e.create()
	defer func() { _ = m.f.Close() }()
	ops := *modelOps
	if ops == 0 {
		ops = 3000
		if raceEnabled {
			ops = 800
		}
	}
	for op := 0; op < ops; op++ {
		m.step(op)
		if got := m.f.Size(); got != int64(len(m.want)) {
			t.Fatalf("op %d: Size = %d, model %d", op, got, len(m.want))
		}
	}
	m.flushAndVerify(ops)
}

// offset picks small offsets mostly, block-boundary neighbours often, and
// now and then one well past the end.
func (m *model) offset() int64 {
	size := int64(len(m.want))
	switch r := m.rng.IntN(10); {
	case r < 5:
		return m.rng.Int64N(size + 1)
	case r < 8:
		b := m.rng.Int64N(size/bs + 2)
		return max(0, b*bs+m.rng.Int64N(5)-2)
	case r < 9:
		return size + m.rng.Int64N(3*bs)
	default:
		return m.rng.Int64N(4 << 20)
	}
}

func (m *model) length() int {
	switch r := m.rng.IntN(10); {
	case r < 4:
		return m.rng.IntN(64)
	case r < 7:
		return m.rng.IntN(2 * bs)
	case r < 9:
		return bs*m.rng.IntN(4) + m.rng.IntN(3) - 1 + 1
	default:
		return m.rng.IntN(1 << 20)
	}
}

func (m *model) trace(op int, format string, args ...any) {
	if *modelTrace {
		m.t.Logf("op %d: "+format, append([]any{op}, args...)...)
	}
}

func (m *model) step(op int) {
	t := m.t
	switch r := m.rng.IntN(100); {
	case r < 40:
		off, n := m.offset(), m.length()
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(m.rng.Uint32() | 1)
		}
		m.trace(op, "WriteAt(%d bytes at %d) size %d", n, off, len(m.want))
		mustWrite(t, m.f, p, off)
		if n > 0 {
			m.grow(off + int64(n))
			copy(m.want[off:], p)
		}
	case r < 75:
		m.checkRead(op, m.offset(), m.length())
	case r < 83:
		size := m.offset()
		if m.rng.IntN(4) == 0 {
			size = m.rng.Int64N(int64(len(m.want)) + 1)
		}
		m.trace(op, "Truncate(%d) size %d", size, len(m.want))
		if err := m.f.Truncate(size); err != nil {
			t.Fatalf("op %d: Truncate(%d): %v", op, size, err)
		}
		if size < int64(len(m.want)) {
			m.want = m.want[:size]
		}
		m.grow(size)
		m.verifyDisk(op) // Truncate flushes
	case r < 87:
		off, n := m.offset(), int64(m.length()+1)
		m.trace(op, "Allocate(%d, %d) size %d", off, n, len(m.want))
		if err := m.f.Allocate(off, n); err != nil {
			t.Fatalf("op %d: Allocate(%d, %d): %v", op, off, n, err)
		}
		m.grow(off + n)
	case r < 95:
		m.trace(op, "Flush")
		m.flushAndVerify(op)
	default:
		m.trace(op, "reopen")
		if err := m.f.Close(); err != nil {
			t.Fatalf("op %d: Close: %v", op, err)
		}
		m.verifyDisk(op)
		m.f = m.e.open()
	}
}

func (m *model) grow(size int64) {
	if size > int64(len(m.want)) {
		m.want = append(m.want, make([]byte, size-int64(len(m.want)))...)
	}
}

func (m *model) checkRead(op int, off int64, n int) {
	p := make([]byte, n)
	got, err := m.f.ReadAt(p, off)
	size := int64(len(m.want))
	wantN := int(max(0, min(int64(n), size-off)))
	if got != wantN {
		m.t.Fatalf("op %d: ReadAt(%d bytes at %d) = %d bytes, want %d (size %d), err %v", op, n, off, got, wantN, size, err)
	}
	if wantN < n && !errors.Is(err, io.EOF) || wantN == n && err != nil {
		m.t.Fatalf("op %d: ReadAt(%d bytes at %d): err %v", op, n, off, err)
	}
	if !bytes.Equal(p[:got], m.want[min(off, size):min(off, size)+int64(got)]) {
		m.t.Fatalf("op %d: ReadAt(%d bytes at %d): content differs from model", op, n, off)
	}
}

func (m *model) flushAndVerify(op int) {
	if err := m.f.Flush(); err != nil {
		m.t.Fatalf("op %d: Flush: %v", op, err)
	}
	m.verifyDisk(op)
}

func (m *model) verifyDisk(op int) {
	got, err := m.e.decryptDisk()
	if err != nil {
		m.t.Fatalf("op %d: decrypting flushed cipher file: %v", op, err)
	}
	if !bytes.Equal(got, m.want) {
		for i := range min(len(got), len(m.want)) {
			if got[i] != m.want[i] {
				m.t.Logf("first difference at %d (block %d)", i, i/bs)
				break
			}
		}
		m.t.Fatalf("op %d: flushed cipher file decrypts to %d bytes differing from the model (%d bytes)", op, len(got), len(m.want))
	}
}
