package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"
)

// The Syncthing harness's REST calls and waits (syncthing_helpers_test.go
// starts and stops the devices).

func (d *syncthingDevice) rest(method, path string, body io.Reader, out any) error {
	return d.restCtx(context.Background(), method, path, body, out)
}

func (d *syncthingDevice) restCtx(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, d.gui+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", d.apiKey)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

func (d *syncthingDevice) mustRest(t testing.TB, method, path string, out any) {
	t.Helper()
	if err := d.rest(method, path, nil, out); err != nil {
		t.Fatalf("syncthing %s: %v", d.name, err)
	}
}

// scan makes the device rescan the folder now; the request returns when the
// scan is done.
func (d *syncthingDevice) scan(t testing.TB) {
	t.Helper()
	d.mustRest(t, "POST", "/rest/db/scan?folder="+syncthingFolderID, nil)
}

func (d *syncthingDevice) connected(t testing.TB, other *syncthingDevice) bool {
	t.Helper()
	var c struct {
		Connections map[string]struct {
			Connected bool `json:"connected"`
			Paused    bool `json:"paused"`
		} `json:"connections"`
	}
	d.mustRest(t, "GET", "/rest/system/connections", &c)
	return c.Connections[other.id].Connected
}

// syncthingStatus is the part of /rest/db/status the waits look at.
type syncthingStatus struct {
	State             string `json:"state"`
	Errors            int    `json:"errors"`
	NeedTotalItems    int    `json:"needTotalItems"`
	GlobalFiles       int    `json:"globalFiles"`
	GlobalDirectories int    `json:"globalDirectories"`
	GlobalSymlinks    int    `json:"globalSymlinks"`
	GlobalDeleted     int    `json:"globalDeleted"`
	GlobalBytes       int64  `json:"globalBytes"`
	LocalFiles        int    `json:"localFiles"`
	LocalDirectories  int    `json:"localDirectories"`
	LocalSymlinks     int    `json:"localSymlinks"`
	LocalBytes        int64  `json:"localBytes"`
}

func (d *syncthingDevice) status(t testing.TB) syncthingStatus {
	t.Helper()
	var s syncthingStatus
	d.mustRest(t, "GET", "/rest/db/status?folder="+syncthingFolderID, &s)
	return s
}

// completion is how complete other's copy of the folder is, as d knows it.
type syncthingCompletion struct {
	Completion  float64 `json:"completion"`
	NeedItems   int     `json:"needItems"`
	NeedDeletes int     `json:"needDeletes"`
	NeedBytes   int64   `json:"needBytes"`
}

func (d *syncthingDevice) completion(t testing.TB, other *syncthingDevice) syncthingCompletion {
	t.Helper()
	var c syncthingCompletion
	d.mustRest(t, "GET", "/rest/db/completion?folder="+syncthingFolderID+"&device="+other.id, &c)
	return c
}

// folderErrors returns the folder's pull errors (files Syncthing could not
// write), as "path: error".
func (d *syncthingDevice) folderErrors(t testing.TB) []string {
	t.Helper()
	var fe struct {
		Errors []struct {
			Path  string `json:"path"`
			Error string `json:"error"`
		} `json:"errors"`
	}
	d.mustRest(t, "GET", "/rest/folder/errors?folder="+syncthingFolderID, &fe)
	var out []string
	for _, e := range fe.Errors {
		out = append(out, e.Path+": "+e.Error)
	}
	return out
}

// shortID is the 7-letter form of the device ID Syncthing writes into
// conflict copies' names (protocol.ShortID.String).
func (d *syncthingDevice) shortID() string { return d.id[:7] }

// waitFor re-checks cond whenever either device reports events (and at
// least every 2 s, in case a change raises none), until it holds or
// syncthingWait passes. cond returns a description of the state for the
// failure message.
func (p *syncthingPair) waitFor(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(syncthingWait)
	defer deadline.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		select {
		case <-p.A.notify:
		case <-p.B.notify:
		case <-time.After(2 * time.Second):
		case <-deadline.C:
			t.Fatalf("syncthing: %s: not reached in %v: %s\nA errors: %v\nB errors: %v\n--- A log:\n%s\n--- B log:\n%s",
				what, syncthingWait, state, p.A.folderErrors(t), p.B.folderErrors(t), p.A.logTail(), p.B.logTail())
		}
		select {
		case <-p.A.done:
			t.Fatalf("syncthing A exited\n%s", p.A.logTail())
		case <-p.B.done:
			t.Fatalf("syncthing B exited\n%s", p.B.logTail())
		default:
		}
	}
}

// waitInSync scans both folders (so changes made just before count even if
// the watcher has not reported them) and waits until both devices are idle,
// need nothing, see each other's copy complete and agree on the global
// state.
func (p *syncthingPair) waitInSync(t testing.TB) {
	t.Helper()
	p.A.scan(t)
	p.B.scan(t)
	p.waitFor(t, "folders in sync", func() (bool, string) {
		sa, sb := p.A.status(t), p.B.status(t)
		ca, cb := p.A.completion(t, p.B), p.B.completion(t, p.A)
		state := fmt.Sprintf("A %+v, B %+v; A's view of B %+v, B's view of A %+v", sa, sb, ca, cb)
		for _, s := range []syncthingStatus{sa, sb} {
			if s.State != "idle" || s.NeedTotalItems != 0 || s.LocalFiles != s.GlobalFiles ||
				s.LocalDirectories != s.GlobalDirectories || s.LocalSymlinks != s.GlobalSymlinks || s.LocalBytes != s.GlobalBytes {
				return false, state
			}
		}
		for _, c := range []syncthingCompletion{ca, cb} {
			if c.Completion < 100 || c.NeedItems != 0 || c.NeedDeletes != 0 {
				return false, state
			}
		}
		same := sa.GlobalFiles == sb.GlobalFiles && sa.GlobalDirectories == sb.GlobalDirectories &&
			sa.GlobalSymlinks == sb.GlobalSymlinks && sa.GlobalDeleted == sb.GlobalDeleted && sa.GlobalBytes == sb.GlobalBytes
		return same, state
	})
}

// disconnect pauses each device on the other (POST /rest/system/pause), so
// both work offline until reconnect.
func (p *syncthingPair) disconnect(t testing.TB) {
	t.Helper()
	p.A.mustRest(t, "POST", "/rest/system/pause?device="+p.B.id, nil)
	p.B.mustRest(t, "POST", "/rest/system/pause?device="+p.A.id, nil)
	p.waitFor(t, "devices disconnected", func() (bool, string) {
		ca, cb := p.A.connected(t, p.B), p.B.connected(t, p.A)
		return !ca && !cb, fmt.Sprintf("A sees B: %v, B sees A: %v", ca, cb)
	})
}

// reconnect resumes both devices and waits for the connection: A first, so
// that B's immediate dial on resume finds A accepting.
func (p *syncthingPair) reconnect(t testing.TB) {
	t.Helper()
	p.A.mustRest(t, "POST", "/rest/system/resume?device="+p.B.id, nil)
	p.B.mustRest(t, "POST", "/rest/system/resume?device="+p.A.id, nil)
	p.waitFor(t, "devices reconnected", func() (bool, string) {
		ca, cb := p.A.connected(t, p.B), p.B.connected(t, p.A)
		return ca && cb, fmt.Sprintf("A sees B: %v, B sees A: %v", ca, cb)
	})
}

// syncthingListDir lists a directory's names, for test messages.
func syncthingListDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}
