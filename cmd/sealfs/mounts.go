package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	sealfs "github.com/sealfs/sealfs/fs"
)

// mountInfo is one sealfs mount as `sealfs mounts` and `status` show it.
// JSON field names are an interface for scripts: add, never rename.
type mountInfo struct {
	Mountpoint string `json:"mountpoint"`
	CipherDir  string `json:"cipher_dir"`
	ReadOnly   bool   `json:"read_only"`
	UID        int    `json:"uid"`
	// Daemon: "ok" when the mount's daemon answers on its control socket,
	// "none" when nothing does (it died: `sealfs unmount` cleans up), ""
	// when unknown (another user's mount, or a daemon that keeps its socket
	// in another runtime directory).
	Daemon string `json:"daemon,omitempty"`
	Log    string `json:"log,omitempty"` // the daemon's log file, when it writes one
}

// mountedAt returns where this machine has the vault in cipherDir mounted
// (fs.MountedAt: any path to the same directory), with its details.
func mountedAt(cipherDir string) (*mountInfo, bool) {
	mp, ok := sealfs.MountedAt(cipherDir)
	if !ok {
		return nil, false
	}
	for _, m := range sealfsMounts(true) {
		if m.Mountpoint == mp {
			return &m, true
		}
	}
	return &mountInfo{Mountpoint: mp, CipherDir: cipherDir}, true
}

// sealfsMounts reads this process's mount table: the sealfs mounts of this
// user, or of every user.
func sealfsMounts(all bool) []mountInfo {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	uid := os.Getuid()
	var out []mountInfo
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+3 >= len(fields) || fields[sep+1] != "fuse.sealfs" {
			continue
		}
		m := mountInfo{Mountpoint: unescapeMount(fields[4]), CipherDir: unescapeMount(fields[sep+2]), UID: -1}
		for _, o := range strings.Split(fields[5], ",") {
			if o == "ro" {
				m.ReadOnly = true
			}
		}
		for _, o := range strings.Split(fields[sep+3], ",") { // super options: go-fuse puts ro here
			if v, ok := strings.CutPrefix(o, "user_id="); ok {
				m.UID, _ = strconv.Atoi(v)
			}
			if o == "ro" {
				m.ReadOnly = true
			}
		}
		if !all && m.UID != uid {
			continue
		}
		if m.UID == uid {
			// No socket: a daemon of another runtime directory, or of
			// another program; unknown rather than dead.
			if files, err := filesFor(m.Mountpoint); err == nil && fileExists(files.sock) {
				m.Daemon = "none"
				if r, err := controlRequest(files.sock, ctlPing, 2*time.Second); err == nil && r == "ok" {
					m.Daemon = "ok"
				}
				if fi, err := os.Stat(files.log); err == nil && fi.Mode().IsRegular() {
					m.Log = files.log
				}
			}
		}
		out = append(out, m)
	}
	return out
}

func (a *app) cmdMounts(asJSON, all bool) error {
	ms := sealfsMounts(all)
	if asJSON {
		if ms == nil {
			ms = []mountInfo{}
		}
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	}
	if len(ms) == 0 {
		if !a.quiet {
			fmt.Fprintln(a.stderr, "sealfs: no sealfs mounts")
		}
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MOUNTPOINT\tVAULT\tMODE\tDAEMON\tLOG")
	for _, m := range ms {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		daemon := map[string]string{"ok": "running", "none": "GONE (sealfs unmount cleans up)", "": "-"}[m.Daemon]
		if all {
			daemon += fmt.Sprintf(" (uid %d)", m.UID)
		}
		log := m.Log
		if log == "" {
			log = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Mountpoint, m.CipherDir, mode, daemon, log)
	}
	return tw.Flush()
}

// checkEmptyMountpoint refuses a mountpoint that holds files: the mount
// would hide them (--nonempty mounts anyway). A dead mount left there
// answers ENOTCONN and is named as such.
func checkEmptyMountpoint(mountpoint string) error {
	f, err := os.Open(mountpoint)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", explainDeadMount(mountpoint, err))
	}
	defer f.Close()
	names, err := f.Readdirnames(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("mountpoint: %w", explainDeadMount(mountpoint, err))
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	shown := strings.Join(names[:min(len(names), 3)], ", ")
	if len(names) > 3 {
		shown += ", …"
	}
	return fmt.Errorf("mountpoint %s is not empty (%s): the mount would hide what is there; "+
		"use an empty folder, or --nonempty (-o nonempty) to mount over it anyway", mountpoint, shown)
}

// explainDeadMount says what ENOTCONN at a mountpoint means.
func explainDeadMount(mountpoint string, err error) error {
	if errors.Is(err, syscall.ENOTCONN) {
		return fmt.Errorf("%w (a mount whose daemon died is still there: `sealfs unmount %s` clears it)", err, mountpoint)
	}
	return err
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// oneLine is the first line of a message.
func oneLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
