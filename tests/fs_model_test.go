package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mfile is the model of one inode; hard links share it.
type mfile struct{ data []byte }

// fsModel is the in-memory reference: paths to inodes, plus the open
// handles (which follow their inode across renames and unlinks).
type fsModel struct {
	files   map[string]*mfile
	dirs    []string
	handles map[*mfile]*os.File
}

// TestFSModel applies thousands of random operations to the mount and to
// an in-memory model and compares them after each step (the touched file)
// and every 50 steps (the whole tree). Replay a failure with SEALFS_SEED;
// SEALFS_MODEL_STEPS changes the length.
func TestFSModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SEALFS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SEALFS_SEED: %v", err)
		}
		seed = v
	}
	steps := 3000
	if s := os.Getenv("SEALFS_MODEL_STEPS"); s != "" {
		steps, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d (replay: SEALFS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5ea1f5))
	m := newMount(t, mountOpts{})
	md := &fsModel{files: map[string]*mfile{}, dirs: []string{"", "d1", "d1/d2", "d3"}, handles: map[*mfile]*os.File{}}
	for _, d := range md.dirs[1:] {
		if err := os.Mkdir(m.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"a", "b", "c", "d", strings.Repeat("long", 60)}
	randPath := func() string {
		return path.Join(md.dirs[rng.IntN(len(md.dirs))], names[rng.IntN(len(names))])
	}
	existing := func() (string, *mfile) {
		if len(md.files) == 0 {
			return "", nil
		}
		keys := make([]string, 0, len(md.files))
		for k := range md.files {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		k := keys[rng.IntN(len(keys))]
		return k, md.files[k]
	}
	handle := func(p string, mf *mfile) *os.File {
		if f := md.handles[mf]; f != nil {
			return f
		}
		f, err := os.OpenFile(m.p(p), os.O_RDWR, 0)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		md.handles[mf] = f
		return f
	}
	closeAll := func() {
		for mf, f := range md.handles {
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			delete(md.handles, mf)
		}
	}
	t.Cleanup(closeAll)
	for step := range steps {
		op := rng.IntN(100)
		var touched, what string
		switch {
		case op < 30 || len(md.files) == 0: // write (creating if needed)
			p := randPath()
			mf := md.files[p]
			if mf == nil {
				if err := os.WriteFile(m.p(p), nil, 0o644); err != nil {
					t.Fatalf("step %d create %s: %v", step, p, err)
				}
				mf = &mfile{}
				md.files[p] = mf
			}
			off := rng.IntN(len(mf.data) + 70_000)
			buf := make([]byte, rng.IntN(70_000)+1)
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			if _, err := handle(p, mf).WriteAt(buf, int64(off)); err != nil {
				t.Fatalf("step %d write %s: %v", step, p, err)
			}
			if end := off + len(buf); end > len(mf.data) {
				mf.data = append(mf.data, make([]byte, end-len(mf.data))...)
			}
			copy(mf.data[off:], buf)
			touched, what = p, fmt.Sprintf("write %d@%d", len(buf), off)
		case op < 42: // truncate, by path or by handle
			p, mf := existing()
			size := rng.IntN(len(mf.data) + 100_000)
			var err error
			if f := md.handles[mf]; f != nil && rng.IntN(2) == 0 {
				err = f.Truncate(int64(size))
			} else {
				err = os.Truncate(m.p(p), int64(size))
			}
			if err != nil {
				t.Fatalf("step %d truncate %s: %v", step, p, err)
			}
			if size < len(mf.data) {
				mf.data = mf.data[:size]
			} else {
				mf.data = append(mf.data, make([]byte, size-len(mf.data))...)
			}
			touched, what = p, fmt.Sprintf("truncate %d", size)
		case op < 57: // rename, possibly over another file
			p, mf := existing()
			q := randPath()
			if err := os.Rename(m.p(p), m.p(q)); err != nil {
				t.Fatalf("step %d rename %s → %s: %v", step, p, q, err)
			}
			if p != q && md.files[q] != mf {
				delete(md.files, p)
				md.files[q] = mf
			}
			touched, what = q, "rename from "+p
		case op < 65: // hard link
			p, mf := existing()
			q := randPath()
			if _, taken := md.files[q]; taken {
				continue
			}
			if err := os.Link(m.p(p), m.p(q)); err != nil {
				t.Fatalf("step %d link %s → %s: %v", step, p, q, err)
			}
			md.files[q] = mf
			touched, what = q, "link from "+p
		case op < 75: // unlink
			p, _ := existing()
			if err := os.Remove(m.p(p)); err != nil {
				t.Fatalf("step %d unlink %s: %v", step, p, err)
			}
			delete(md.files, p)
			what = "unlink " + p
		case op < 85: // fsync / fdatasync
			p, mf := existing()
			f := handle(p, mf)
			var err error
			if rng.IntN(2) == 0 {
				err = f.Sync()
			} else {
				err = syscall.Fdatasync(int(f.Fd()))
			}
			if err != nil {
				t.Fatalf("step %d fsync %s: %v", step, p, err)
			}
			touched, what = p, "fsync"
		case op < 98: // reopen
			closeAll()
			what = "reopen"
		default: // remount
			closeAll()
			m.remount(mountOpts{})
			what = "remount"
		}
		if touched != "" {
			md.checkFile(t, m, step, what, touched)
		}
		if step%50 == 49 || step == steps-1 {
			md.checkAll(t, m, step, what)
		}
	}
}

func (md *fsModel) checkFile(t *testing.T, m *testMount, step int, what, p string) {
	t.Helper()
	got, err := os.ReadFile(m.p(p))
	if err != nil {
		t.Fatalf("step %d (%s): read %s: %v", step, what, p, err)
	}
	if want := md.files[p].data; !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		st, serr := os.Stat(m.p(p))
		again, aerr := os.ReadFile(m.p(p))
		t.Fatalf("step %d (%s): %s has %d bytes, model %d; first difference at %d (stat %v %v; reread %d %v)",
			step, what, p, len(got), len(want), i, st.Size(), serr, len(again), aerr)
	}
}

func (md *fsModel) checkAll(t *testing.T, m *testMount, step int, what string) {
	t.Helper()
	var onDisk []string
	for _, d := range md.dirs {
		ents, err := os.ReadDir(m.p(d))
		if err != nil {
			t.Fatalf("step %d (%s): readdir %q: %v", step, what, d, err)
		}
		for _, e := range ents {
			if !e.IsDir() {
				onDisk = append(onDisk, path.Join(d, e.Name()))
			}
		}
	}
	var inModel []string
	for p := range md.files {
		inModel = append(inModel, p)
	}
	slices.Sort(onDisk)
	slices.Sort(inModel)
	if !slices.Equal(onDisk, inModel) {
		t.Fatalf("step %d (%s): mount lists %q, model %q", step, what, onDisk, inModel)
	}
	for _, p := range inModel {
		md.checkFile(t, m, step, what, p)
	}
}
