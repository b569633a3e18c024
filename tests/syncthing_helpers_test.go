package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Two Syncthing devices on 127.0.0.1 sharing one folder, as two computers of
// a user would, fully offline: global and local discovery, relays, NAT/STUN,
// usage and crash reporting and upgrades are off; each device dials the
// other's static tcp://127.0.0.1:PORT (B dials A; see writeConfig). Every
// wait is on Syncthing's REST API
// (/rest/events long polls, /rest/db/status, /rest/db/completion), never a
// guessed sleep.
//
// Use from a test:
//
//	p := startSyncthingPair(t, syncthingOptions{})    // or DirA/DirB: folders to share
//	os.WriteFile(filepath.Join(p.A.dir, "f"), …)
//	p.waitInSync(t)                                   // scans both, waits for both to agree
//	p.disconnect(t); …change both sides…; p.reconnect(t); p.waitInSync(t)
//
// Both devices are shut down in order (POST /rest/system/shutdown) when the
// test ends; their homes, logs and databases are under t.TempDir().

// syncthingFolderID is the ID of the folder a pair shares.
const syncthingFolderID = "sealfs-vault"

// syncthingWait bounds every wait; on loopback a sync of a few files takes
// well under a second.
const syncthingWait = 60 * time.Second

type syncthingOptions struct {
	DirA, DirB string // the folders to share; fresh empty ones when ""
	// RescanS is the full-rescan interval (default 10 s; the fs watcher
	// picks up changes in about a second, and waitInSync scans anyway).
	RescanS int
	// MaxConflicts is the folder's maxConflicts (0 keeps Syncthing's
	// default, 10; -1 keeps every copy).
	MaxConflicts int
}

type syncthingPair struct {
	A, B *syncthingDevice
	// xattrs: this Syncthing version syncs extended attributes, and the
	// folder has it on.
	xattrs bool
}

type syncthingDevice struct {
	name    string
	home    string // config, keys, database
	dir     string // the shared folder
	id      string // device ID
	apiKey  string
	gui     string // http://127.0.0.1:PORT
	listen  int
	cmd     *exec.Cmd
	done    chan struct{}
	logPath string
	client  *http.Client
	notify  chan struct{} // a value whenever events arrived
	stopEv  context.CancelFunc
	evDone  chan struct{}
}

// requireSyncthing skips the test when syncthing is not installed (Debian:
// apt install syncthing; tests/install-deps does).
func requireSyncthing(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("syncthing"); err != nil {
		t.Skip("syncthing not installed (Debian: apt install syncthing)")
	}
}

// syncthingVersion returns e.g. "v1.19.2-ds1".
func syncthingVersion(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("syncthing", "--version").Output()
	if err != nil {
		t.Fatalf("syncthing --version: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		t.Fatalf("syncthing --version: %q", out)
	}
	return f[1]
}

// startSyncthingPair starts devices A and B sharing one send-receive folder
// and returns once they are connected and the (possibly non-empty) folders
// agree.
func startSyncthingPair(t *testing.T, o syncthingOptions) *syncthingPair {
	t.Helper()
	requireSyncthing(t)
	if o.RescanS == 0 {
		o.RescanS = 10
	}
	base := t.TempDir()
	a := newSyncthingDevice(t, "A", filepath.Join(base, "A"), o.DirA)
	b := newSyncthingDevice(t, "B", filepath.Join(base, "B"), o.DirB)
	for _, d := range []*syncthingDevice{a, b} {
		d.writeConfig(t, a, b)
		d.start(t)
	}
	p := &syncthingPair{A: a, B: b}
	for _, d := range []*syncthingDevice{a, b} {
		p.xattrs = d.addFolder(t, o, a, b)
	}
	p.waitFor(t, "devices connected", func() (bool, string) {
		ca, cb := a.connected(t, b), b.connected(t, a)
		return ca && cb, fmt.Sprintf("A sees B: %v, B sees A: %v", ca, cb)
	})
	p.waitInSync(t)
	return p
}

func newSyncthingDevice(t *testing.T, name, home, dir string) *syncthingDevice {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(home, "folder")
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &syncthingDevice{name: name, home: home, dir: dir, apiKey: randomHex(t, 16),
		logPath: filepath.Join(home, "syncthing.log"), notify: make(chan struct{}, 1),
		client: &http.Client{Timeout: 90 * time.Second}}
	gen := exec.Command("syncthing", "generate", "--home="+home, "--no-default-folder", "--skip-port-probing")
	gen.Env = syncthingEnv(home)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("syncthing generate: %v\n%s", err, out)
	}
	idCmd := exec.Command("syncthing", "serve", "--home="+home, "--device-id")
	idCmd.Env = syncthingEnv(home)
	out, err := idCmd.Output()
	if err != nil {
		t.Fatalf("syncthing --device-id: %v", err)
	}
	d.id = strings.TrimSpace(string(out))
	d.listen = freeTCPPort(t)
	d.gui = fmt.Sprintf("http://127.0.0.1:%d", freeTCPPort(t))
	return d
}

// syncthingEnv keeps Syncthing in its own HOME and off the network's
// update service whatever the config says.
func syncthingEnv(home string) []string {
	env := []string{"HOME=" + home, "STNOUPGRADE=1", "STNORESTART=1", "STNODEFAULTFOLDER=1"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == "PATH" || k == "TZ" || k == "LANG" {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeConfig replaces the generated config.xml (keeping the generated
// keys) with one that knows both devices and keeps Syncthing off the
// network. The folder is added through the REST API (addFolder): Syncthing
// 1.19 fills in defaults for folders given as JSON but leaves fields a
// config.xml omits at zero (maxConflicts 0 would delete every conflict copy).
func (d *syncthingDevice) writeConfig(t *testing.T, a, b *syncthingDevice) {
	t.Helper()
	// Only B dials (A's static address); A only listens: its address for B
	// is "dynamic", which with discovery off resolves to nothing. When both
	// dialled at once after a resume, Syncthing 1.19 sometimes sat out a 20 s
	// Hello timeout on the crossed connections ("Failed to exchange Hello
	// messages … i/o timeout").
	device := func(p *syncthingDevice) string {
		addr := fmt.Sprintf("tcp://127.0.0.1:%d", p.listen)
		if d == a || p == d {
			addr = "dynamic"
		}
		return fmt.Sprintf(`<device id="%s" name="%s" compression="metadata" introducer="false">
        <address>%s</address>
        <autoAcceptFolders>false</autoAcceptFolders>
    </device>`, p.id, p.name, addr)
	}
	cfg := fmt.Sprintf(`<configuration version="36">
    %s
    %s
    <gui enabled="true" tls="false" debugging="false">
        <address>%s</address>
        <apikey>%s</apikey>
    </gui>
    <options>
        <listenAddress>tcp://127.0.0.1:%d</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <urAccepted>-1</urAccepted>
        <urSeen>3</urSeen>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <crashReportingEnabled>false</crashReportingEnabled>
        <startBrowser>false</startBrowser>
        <reconnectionIntervalS>1</reconnectionIntervalS>
        <progressUpdateIntervalS>-1</progressUpdateIntervalS>
        <setLowPriority>false</setLowPriority>
        <announceLANAddresses>false</announceLANAddresses>
        <restartOnWakeup>false</restartOnWakeup>
    </options>
</configuration>
`, device(a), device(b), strings.TrimPrefix(d.gui, "http://"), d.apiKey, d.listen)
	if err := os.WriteFile(filepath.Join(d.home, "config.xml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// addFolder shares the folder with both devices, with the folder defaults
// of this Syncthing version plus the options below, and reads the result
// back. It reports whether this version can sync extended attributes (it
// then does: syncXattrs and sendXattrs, Syncthing ≥ 1.22).
func (d *syncthingDevice) addFolder(t *testing.T, o syncthingOptions, a, b *syncthingDevice) (xattrs bool) {
	t.Helper()
	var defaults map[string]any
	d.mustRest(t, "GET", "/rest/config/defaults/folder", &defaults)
	_, xattrs = defaults["syncXattrs"]
	maxConflicts := 10
	if o.MaxConflicts != 0 {
		maxConflicts = o.MaxConflicts
	}
	folder := map[string]any{
		"id": syncthingFolderID, "label": "sealfs vault", "path": d.dir, "type": "sendreceive",
		"devices":         []map[string]string{{"deviceID": a.id}, {"deviceID": b.id}},
		"rescanIntervalS": o.RescanS, "fsWatcherEnabled": true, "fsWatcherDelayS": 1,
		"ignorePerms": false, "maxConflicts": maxConflicts,
	}
	if xattrs {
		folder["syncXattrs"], folder["sendXattrs"] = true, true
	}
	body, err := json.Marshal(folder)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.rest("POST", "/rest/config/folders", bytes.NewReader(body), nil); err != nil {
		t.Fatalf("syncthing %s: adding the folder: %v", d.name, err)
	}
	var got map[string]any
	d.mustRest(t, "GET", "/rest/config/folders/"+syncthingFolderID, &got)
	for k, want := range folder {
		if k == "devices" {
			continue
		}
		if fmt.Sprint(got[k]) != fmt.Sprint(want) {
			t.Fatalf("syncthing %s: folder %s = %v, want %v", d.name, k, got[k], want)
		}
	}
	return xattrs
}

func (d *syncthingDevice) start(t *testing.T) {
	t.Helper()
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command("syncthing", "serve", "--home="+d.home, "--no-browser", "--no-restart", "--no-upgrade",
		"--no-default-folder", "--skip-port-probing", "--logflags=3")
	d.cmd.Env = syncthingEnv(d.home)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	d.done = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.stop(t) })

	deadline := time.Now().Add(syncthingWait)
	for {
		var st struct {
			MyID string `json:"myID"`
		}
		if err := d.rest("GET", "/rest/system/status", nil, &st); err == nil {
			if st.MyID != d.id {
				t.Fatalf("device %s answers as %s, want %s", d.name, st.MyID, d.id)
			}
			break
		}
		select {
		case <-d.done:
			t.Fatalf("syncthing %s exited: %v\n%s", d.name, d.cmd.ProcessState, d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("syncthing %s: REST API not up\n%s", d.name, d.logTail())
		}
		// The GUI listener comes up a few hundred ms after start; this is
		// the one poll that has no event stream to wait on yet.
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stopEv, d.evDone = cancel, make(chan struct{})
	go d.watchEvents(ctx)
}

// watchEvents long-polls /rest/events and signals notify whenever
// something happened, until the device stops.
func (d *syncthingDevice) watchEvents(ctx context.Context) {
	defer close(d.evDone)
	since := 0
	for ctx.Err() == nil {
		var evs []struct {
			ID int `json:"id"`
		}
		q := fmt.Sprintf("/rest/events?since=%d&timeout=30", since)
		if err := d.restCtx(ctx, "GET", q, nil, &evs); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-d.done:
				return
			case <-time.After(100 * time.Millisecond): // a failed poll; retry
			}
			continue
		}
		for _, e := range evs {
			since = max(since, e.ID)
		}
		if len(evs) > 0 {
			select {
			case d.notify <- struct{}{}:
			default:
			}
		}
	}
}

// stop shuts the device down through the REST API and waits for the exit.
func (d *syncthingDevice) stop(t testing.TB) {
	t.Helper()
	if d.stopEv != nil {
		d.stopEv()
		<-d.evDone
	}
	select {
	case <-d.done:
		return
	default:
	}
	if err := d.rest("POST", "/rest/system/shutdown", nil, nil); err != nil {
		t.Errorf("syncthing %s shutdown: %v", d.name, err)
	}
	select {
	case <-d.done:
		if !d.cmd.ProcessState.Success() {
			t.Errorf("syncthing %s exited with %v\n%s", d.name, d.cmd.ProcessState, d.logTail())
		}
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
		t.Errorf("syncthing %s ignored the shutdown request\n%s", d.name, d.logTail())
	}
}

func (d *syncthingDevice) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}
