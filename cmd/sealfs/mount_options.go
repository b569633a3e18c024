package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mount(8) and /etc/fstab (sealfs help mount-options). mount.fuse3 runs
// "sealfs SOURCE MOUNTPOINT -o OPTIONS" through sh -c, having removed the
// options it handles itself (user, users, nouser, auto, noauto, nofail,
// _netdev, setuid=, drop_privileges) and added dev and suid unless nodev
// and nosuid were given. mount(8) runs /sbin/mount.fuse.sealfs (or
// mount.sealfs for -t sealfs) with "SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]
// [-t TYPE]" when that helper exists.

// helperMount recognises the mount helper's command line: sealfs installed
// as mount.fuse.sealfs or mount.sealfs, or "sealfs SOURCE MOUNTPOINT -o …",
// whose first argument names no command. ok is false for every other
// command line.
func helperMount(argv0 string, args []string) (req *mountRequest, ok bool, err error) {
	base := filepath.Base(argv0)
	asHelper := base == "mount.fuse.sealfs" || base == "mount.sealfs"
	if !asHelper {
		if len(args) < 2 || strings.HasPrefix(args[0], "-") || isCommandName(args[0]) || args[0] == "help" ||
			args[0] == "version" || args[0] == "completion" || args[0] == "__complete" || args[0] == "__completeNoDesc" {
			return nil, false, nil
		}
		// A path (or -o with the options) tells a mount from a mistyped command.
		if !strings.Contains(args[0], "/") && !hasArg(args, "-o") {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return nil, false, nil
			}
		}
	}
	return parseHelperArgs(args)
}

func hasArg(args []string, want string) bool {
	for _, a := range args {
		if a == want || strings.HasPrefix(a, want) && want == "-o" {
			return true
		}
	}
	return false
}

// parseHelperArgs reads SOURCE MOUNTPOINT [-sfnv] [-N NS] [-t TYPE] [-o OPTIONS].
func parseHelperArgs(args []string) (*mountRequest, bool, error) {
	req := &mountRequest{helper: true}
	var pos, opts []string
	sloppy := false
	for i := 0; i < len(args); i++ {
		s := args[i]
		switch {
		case s == "-o" || s == "-t" || s == "-N":
			if i+1 >= len(args) {
				return nil, true, usagef("mount helper: %s needs a value", s)
			}
			if s == "-o" {
				opts = append(opts, args[i+1])
			}
			i++
		case strings.HasPrefix(s, "-o"):
			opts = append(opts, s[2:])
		case strings.HasPrefix(s, "-") && len(s) > 1:
			for _, c := range s[1:] {
				switch c {
				case 's':
					sloppy = true
				case 'f':
					req.fake = true
				case 'n', 'v':
				default:
					return nil, true, usagef("mount helper: unknown flag -%c (usage: sealfs CIPHERDIR MOUNTPOINT [-o OPTIONS])", c)
				}
			}
		default:
			pos = append(pos, s)
		}
	}
	if len(pos) != 2 {
		return nil, true, usagef("mount helper: want CIPHERDIR MOUNTPOINT [-o OPTIONS], got %q", strings.Join(pos, " "))
	}
	req.cipherDir, req.mountpoint = pos[0], pos[1]
	req.opts, req.sloppy = opts, sloppy
	return req, true, nil
}

// applyMountOptions applies one -o argument (comma-separated) to r and a.
// Unknown options are errors unless sloppy (mount -s).
func (a *app) applyMountOptions(r *mountRequest, opts string, sloppy bool) error {
	for _, o := range strings.Split(opts, ",") {
		name, value, hasValue := strings.Cut(o, "=")
		need := func() (string, error) {
			if !hasValue || value == "" {
				return "", usagef("mount option %s needs a value (%s=...)", name, name)
			}
			return value, nil
		}
		var err error
		switch name {
		case "":
		case "ro":
			r.fuse.readOnly = true
		case "rw":
			r.fuse.readOnly = false
		case "allow_other":
			r.fuse.allowOther = true
		case "nonempty":
			r.nonempty = true
		case "debug":
			r.fuse.debug = true
		case "idle":
			var v string
			if v, err = need(); err == nil {
				err = (*idleFlag)(&r.fuse.idle).Set(v)
				if err != nil {
					err = usagef("mount option idle=%s: %v", v, err)
				}
			}
		case "tpm":
			a.tpmSpec, err = need()
		case "passfile", "password_file", "password-file":
			a.passwordFile, err = need()
		case "slot":
			a.slot, err = need()
		case "noexec":
			err = usagef("mount option noexec is not supported (sealfs mounts nosuid,nodev, and a backup holds programs as files)")
		case "allow_root":
			err = usagef("mount option allow_root is not supported: use allow_other")
		default:
			if !ignoredMountOption(name) && !sloppy {
				err = usagef("unknown mount option %q (see `sealfs help mount-options`)", o)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ignoredMountOption: options that belong to mount(8), systemd or the
// kernel's generic set, which reach sealfs (or not, depending on the path)
// and need nothing from it. sealfs always mounts nosuid,nodev.
func ignoredMountOption(name string) bool {
	switch name {
	case "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "nofail", "_netdev",
		"dev", "nodev", "suid", "nosuid", "exec", "atime", "noatime", "relatime", "norelatime", "strictatime",
		"lazytime", "nolazytime", "diratime", "nodiratime", "sync", "async", "dirsync", "default_permissions",
		"fsname", "subtype", "comment":
		return true
	}
	return strings.HasPrefix(name, "x-") || strings.HasPrefix(name, "X-")
}

// idleFlag is a duration as --idle and idle= take it: a bare number is
// minutes ("30" = 30m), else Go's syntax (90s, 30m, 1h30m); 0 is never.
type idleFlag time.Duration

func (f *idleFlag) String() string {
	if *f == 0 {
		return "0"
	}
	return time.Duration(*f).String()
}

func (f *idleFlag) Type() string { return "DURATION" }

func (f *idleFlag) Set(s string) error {
	d, err := parseIdle(s)
	if err != nil {
		return err
	}
	*f = idleFlag(d)
	return nil
}

func parseIdle(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Minute, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want minutes (30) or a duration with a unit (90s, 30m, 1h30m), got %q", s)
	}
	return d, nil
}
