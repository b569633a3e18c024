package main

import (
	"strconv"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Flags shared by several commands. Each command adds only those that apply
// to it; their wording is the same everywhere.

func (a *app) addTPMFlag(fs *pflag.FlagSet) {
	fs.StringVar(&a.tpmSpec, "tpm", "", "use the TPM `SPEC`: /dev/tpmrm0, unix:PATH or tcp:HOST:PORT (a running swtpm), or swtpm:DIR "+
		"(a software TPM sealfs runs itself, state in DIR); default $SEALFS_TPM, else /dev/tpmrm0")
}

func (a *app) addPasswordFlags(fs *pflag.FlagSet) {
	fs.StringVar(&a.passwordFile, "password-file", "", "read the password from the first line of `FILE` (- for standard input)")
	fs.StringVar(&a.extpass, "extpass", "", "run `CMD` with sh -c; its standard output is the password")
}

func (a *app) addRecoveryKeyFlag(fs *pflag.FlagSet) {
	fs.StringVar(&a.recoveryKeyFile, "recovery-key-file", "", "read the recovery key from `FILE` (- for standard input) instead of the terminal")
}

func addWithRecovery(fs *pflag.FlagSet, p *bool, what string) {
	fs.BoolVar(p, "with-recovery", false, what+" with the recovery key (asked on the terminal) instead of this machine's password")
}

func (a *app) addSlotFlag(fs *pflag.FlagSet) {
	fs.StringVar(&a.slot, "slot", "", "use TPM slot `ID` when this TPM holds several (see `sealfs slots`)")
}

func (a *app) addCommonFlags(fs *pflag.FlagSet, quiet string) {
	if quiet != "" {
		fs.BoolVarP(&a.quiet, "quiet", "q", false, quiet)
	}
	fs.BoolVarP(&a.debug, "verbose", "v", false, "debug messages")
}

// slotFlags are the policy flags of a new TPM slot (init, recover, enroll).
type slotFlags struct {
	pcrs     pcrList
	maxTries uint
	label    string
}

// labelOrHost is the new slot's label: --label, else the host name.
func (sf *slotFlags) labelOrHost() string {
	if sf.label != "" {
		return sf.label
	}
	return hostname()
}

func addSlotFlags(fs *pflag.FlagSet) *slotFlags {
	sf := &slotFlags{}
	fs.UintVar(&sf.maxTries, "max-tries", defaultMaxTries, "the TPM ends the new slot for good after `N` consecutive wrong "+
		"passwords (a right one restores all N); after that only the recovery key opens the vault. 0: a plain slot, "+
		"limited only by the TPM's dictionary-attack lockout, which on most machines anyone can reset")
	fs.Var(&sf.pcrs, "pcr", "also bind the new slot to these PCRs (e.g. 7 or 0,7): it opens only while the machine's "+
		"measured boot state is unchanged")
	fs.StringVar(&sf.label, "label", "", "`NAME` the new slot (default: this machine's host name)")
	return sf
}

// commands returns the tree's commands, in the order help lists them.
func (a *app) commands() []*cobra.Command {
	return []*cobra.Command{
		a.initCommand(), a.mountCommand(), a.unmountCommand(), a.mountsCommand(), a.statusCommand(), a.slotsCommand(),
		a.passwdCommand(), a.recoverCommand(), a.enrollCommand(), a.revokeCommand(), a.fsckCommand(), a.extractCommand(),
		a.versionCommand(),
	}
}

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	c := &cobra.Command{
		Use:   "init CIPHERDIR",
		Short: "create a vault: a TPM slot behind a password, plus a recovery key",
		Long: `Create a vault in CIPHERDIR (made if missing; it must hold nothing but a sync
service's own files). Asks for a password twice, seals the vault's key in
this machine's TPM behind it, and shows the recovery key once, with a QR code
on a terminal. ` + recoveryKeyDescription + ` Then asks you to type back one
group of it, so that a key nobody saved never guards a vault; a wrong answer
or an interruption takes the vault back.

The new TPM slot is attempt-limited: the TPM ends it for good after
` + strconv.Itoa(defaultMaxTries) + ` consecutive wrong passwords (a right one restores them all), even
against someone who owns the machine and resets its lockout. After that only
the recovery key opens the vault.`,
		Example: `  sealfs init ~/Dropbox/backup.sealfs
  sealfs init --password-file /etc/sealfs/pw --no-confirm /srv/cloud/vault   # scripts: save the key from stdout`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a.newTPM = true
			return a.cmdInit(args[0], o)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addPasswordFlags(fs)
	o.slot = addSlotFlags(fs)
	fs.BoolVar(&o.noConfirm, "no-confirm", false, "do not ask to type back part of the recovery key (scripts)")
	fs.BoolVar(&o.qr, "qr", false, "print the recovery key's QR code even when standard output is not a terminal")
	a.addCommonFlags(fs, "no note about a software TPM")
	return c
}

func (a *app) mountCommand() *cobra.Command {
	r := &mountRequest{}
	var opts []string
	c := &cobra.Command{
		Use:   "mount CIPHERDIR MOUNTPOINT",
		Short: "unlock the vault and mount it (in the background unless --foreground)",
		Long: `Unlock the vault in CIPHERDIR with this machine's TPM and your password (or the
recovery key: --with-recovery) and show it decrypted at MOUNTPOINT, which must
be an empty directory (--nonempty to mount over files anyway). Returns once
the mount is ready and prints where it is, how to unmount it and where its log
is; a damaged file reads as an I/O error there and the log says why.
Unmounting (sealfs unmount, or --idle) wipes the key from memory.

Each vault can be mounted once per machine. mount(8) and /etc/fstab work too:
see ` + "`sealfs help mount-options`" + `.`,
		Example: `  sealfs mount ~/Dropbox/backup.sealfs ~/backup
  sealfs mount --idle 30m --ro ~/Dropbox/backup.sealfs ~/backup
  sealfs mount --with-recovery ~/Dropbox/backup.sealfs ~/backup   # TPM locked, cleared or elsewhere`,
		Args:              positional(2, 2),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r.cipherDir, r.mountpoint, r.opts = args[0], args[1], opts
			return a.mount(r)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addPasswordFlags(fs)
	a.addSlotFlag(fs)
	addWithRecovery(fs, &r.withRecovery, "unlock")
	a.addRecoveryKeyFlag(fs)
	fs.BoolVarP(&r.foreground, "foreground", "f", false, "stay in the foreground, logging to stderr, until unmounted or signalled")
	fs.BoolVar(&r.fuse.readOnly, "ro", false, "mount read-only")
	fs.Var((*idleFlag)(&r.fuse.idle), "idle", "unmount and wipe the key after `DURATION` without file system activity: "+
		"minutes (30) or with a unit (90s, 30m, 1h30m); 0: never")
	fs.BoolVar(&r.nonempty, "nonempty", false, "mount even if MOUNTPOINT holds files (the mount hides them)")
	fs.BoolVar(&r.fuse.allowOther, "allow-other", false, "let other users enter the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	fs.StringArrayVarP(&opts, "options", "o", nil, "mount `OPTIONS` as in fstab, comma-separated: ro, allow_other, nonempty, "+
		"idle=DURATION, tpm=SPEC, passfile=FILE, slot=ID (see sealfs help mount-options)")
	fs.BoolVar(&r.fuse.debug, "debug", false, "log every FUSE request (slow; for bug reports)")
	fs.BoolVar(&r.daemon, "daemon", false, "internal: run as the background daemon, key on fd 3")
	_ = fs.MarkHidden("daemon")
	a.addCommonFlags(fs, "print nothing on success")
	return c
}

func (a *app) unmountCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "unmount MOUNTPOINT",
		Aliases: []string{"lock"},
		Short:   "flush, unmount and wipe the key from memory",
		Long: `Flush every file, unmount MOUNTPOINT and wipe the vault's key from the mount
daemon's memory. Refused while a process has a file open or its working
directory there (fuser -vm MOUNTPOINT lists them); the vault then stays
unlocked. A mount whose daemon died is unmounted through the kernel.`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeMountpoints,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.cmdUnmount(args[0])
		},
	}
	a.addCommonFlags(c.Flags(), "print nothing on success")
	return c
}

func (a *app) mountsCommand() *cobra.Command {
	var asJSON, all bool
	c := &cobra.Command{
		Use:   "mounts",
		Short: "list your sealfs mounts",
		Long: `List the sealfs mounts of this user (every user's with --all): where each
vault is mounted, read-only or not, whether its daemon answers, and its log.`,
		Args: positional(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.cmdMounts(asJSON, all)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().BoolVar(&all, "all", false, "every user's mounts, not only yours")
	a.addCommonFlags(c.Flags(), "say nothing when there are no mounts")
	return c
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status CIPHERDIR",
		Short: "the vault's slots, where it is mounted, and this TPM's guessing limits",
		Long: `Show the vault's keyslots (which belong to this TPM, tries left on
attempt-limited ones), whether and where the vault is mounted, and this TPM's
dictionary-attack state. Asks for no password; the slot list is read without
the key, so it is authenticated only at the next unlock.`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.statusOrSlots("status", args[0], asJSON)
		},
	}
	a.addTPMFlag(c.Flags())
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON (fields are added, never renamed)")
	a.addCommonFlags(c.Flags(), "no note about a software TPM")
	return c
}

func (a *app) slotsCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:               "slots CIPHERDIR",
		Short:             "list the vault's keyslots",
		Long:              `List the vault's keyslots: the recovery slot and one TPM slot per machine (or more).`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.statusOrSlots("slots", args[0], asJSON)
		},
	}
	a.addTPMFlag(c.Flags())
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	a.addCommonFlags(c.Flags(), "")
	return c
}

func (a *app) passwdCommand() *cobra.Command {
	var newFile string
	var limit maxTriesFlag
	c := &cobra.Command{
		Use:   "passwd CIPHERDIR",
		Short: "change this machine's password (and attempt limit)",
		Long: `Change the password of this machine's TPM slot, asking for the current one
first. With --max-tries, also set the slot's attempt limit (0 makes it a plain
slot). A forgotten password cannot be changed: use sealfs recover.`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.cmdPasswd(args[0], newFile, limit)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addPasswordFlags(fs)
	fs.StringVar(&newFile, "new-password-file", "", "read the new password from `FILE` (else asked twice)")
	fs.Var(&limit, "max-tries", "also set the slot's attempt limit: after `N` consecutive wrong passwords only the recovery "+
		"key opens the vault (0: no limit; default: keep the slot's)")
	a.addSlotFlag(fs)
	a.addCommonFlags(fs, "")
	return c
}

func (a *app) recoverCommand() *cobra.Command {
	var sf *slotFlags
	c := &cobra.Command{
		Use:   "recover CIPHERDIR",
		Short: "with the recovery key: a new TPM slot and password for this machine, replacing its old one",
		Long: `Open the vault with the recovery key and give this machine a new TPM slot
behind a new password, replacing the slots this TPM had. Use it when this
machine lost access: the password is forgotten, an attempt-limited slot used
up its tries, the TPM was cleared or the motherboard replaced, or the
measured boot state (--pcr) changed. Other machines' slots stay as they are.

To add a machine and keep the existing slots, use sealfs enroll instead. To
get at the files once without changing anything, mount --with-recovery.`,
		Example:           `  sealfs recover ~/Dropbox/backup.sealfs`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a.newTPM = true
			return a.cmdRecover(args[0], sf)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addRecoveryKeyFlag(fs)
	a.addPasswordFlags(fs)
	sf = addSlotFlags(fs)
	a.addCommonFlags(fs, "")
	return c
}

func (a *app) enrollCommand() *cobra.Command {
	var o enrollOptions
	c := &cobra.Command{
		Use:   "enroll CIPHERDIR",
		Short: "add a TPM slot for this machine, keeping the others (a new or second machine)",
		Long: `Add a TPM slot for this machine, authorised by the recovery key (the default)
or by the password of an existing slot (--with-password, with --from-tpm when
that slot is another TPM's, e.g. the old machine's swtpm). Existing slots,
this machine's included, stay valid. Use it to set up a new machine next to
the old one; use sealfs recover when this machine's own slot is lost.`,
		Example: `  sealfs enroll ~/Dropbox/backup.sealfs                   # asks for the recovery key
  sealfs enroll --with-password --from-tpm swtpm:/old/tpm ~/Dropbox/backup.sealfs`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a.newTPM = true
			return a.cmdEnroll(args[0], o)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addRecoveryKeyFlag(fs)
	a.addPasswordFlags(fs)
	fs.BoolVar(&o.withPassword, "with-password", false, "authorise with the password of an existing slot instead of the recovery key")
	fs.StringVar(&o.fromTPM, "from-tpm", "", "with --with-password: the TPM (`SPEC`) holding that slot (default: the --tpm one)")
	fs.StringVar(&o.newFile, "new-password-file", "", "with --with-password: read the new slot's password from `FILE`")
	a.addSlotFlag(fs)
	o.slot = addSlotFlags(fs)
	a.addCommonFlags(fs, "")
	return c
}

func (a *app) revokeCommand() *cobra.Command {
	var force, withRecovery bool
	c := &cobra.Command{
		Use:   "revoke CIPHERDIR SLOT",
		Short: "remove a keyslot",
		Long: `Remove SLOT (an ID from sealfs slots) from the vault, authorised by this
machine's password or the recovery key. An attempt-limited slot's NV index is
deleted from this TPM, so no old copy of the header can open it any more. The
recovery slot goes only with --force.`,
		Args:              positional(2, 2),
		ValidArgsFunction: completeSlots,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.cmdRevoke(args[0], args[1], force, withRecovery)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addPasswordFlags(fs)
	a.addSlotFlag(fs)
	addWithRecovery(fs, &withRecovery, "authorise")
	a.addRecoveryKeyFlag(fs)
	fs.BoolVar(&force, "force", false, "allow removing the recovery slot (a lost TPM or password then loses the vault)")
	a.addCommonFlags(fs, "")
	return c
}

func (a *app) fsckCommand() *cobra.Command {
	var o offlineOptions
	c := &cobra.Command{
		Use:   "fsck CIPHERDIR",
		Short: "verify every header, block and name; report damage",
		Long: `Read the whole vault without FUSE and verify every file header, block, name,
symlink target and extended attribute, and sort what it finds into classes:
damage, crash leftovers, entries of another directory, sync in progress and
conflict copies (the last two are notes, not damage). Findings are listed
with the path in the vault (and the cipher file behind it). The vault is
only read, unless --repair --yes (or a "y" at the prompt) applies the
mechanical repairs: restoring a lost sealfs.dirid that the directory's
names prove, re-encrypting names that belong to another directory's ID,
removing leftovers. Run repairs while the sync service is idle.

Exit status (as fsck(8)): 0 no damage found, 1 problems found and all
repaired, 4 problems found and left, 8 could not run (wrong password, TPM
error, unreadable folder), 2 usage error, 130/143 interrupted.`,
		Args:              positional(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.cmdFsck(args[0], o)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addPasswordFlags(fs)
	a.addSlotFlag(fs)
	addWithRecovery(fs, &o.withRecovery, "unlock")
	a.addRecoveryKeyFlag(fs)
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&o.repair, "repair", false, "repair what is mechanical (a lost sealfs.dirid, names of another directory, "+
		"leftovers): a dry run that asks on a terminal, unless --yes")
	fs.BoolVar(&o.yes, "yes", false, "with --repair: apply the repairs without asking")
	a.addCommonFlags(fs, "no progress bar")
	return c
}

func (a *app) extractCommand() *cobra.Command {
	var o offlineOptions
	c := &cobra.Command{
		Use:   "extract CIPHERDIR DEST [PATH]",
		Short: "decrypt the vault, or PATH in it, into DEST without FUSE",
		Long: `Decrypt the whole vault, or PATH in it (as it appears in the mount), into the
folder DEST, with modes, owners (as root), times, user xattrs, symlinks,
FIFOs and hard links. Needs no FUSE: restores work in a container or rescue
system. A damaged block is written as zeros and reported; the rest of the
file is kept.

DEST (or DEST/PATH) must be new or empty, unless you choose what happens to
what is there: --skip-existing keeps it and extracts the rest, --overwrite
replaces it with the vault's version (directories are merged).

Exit status: 0 everything extracted intact, 4 extracted with problems
(listed), 8 could not run (wrong password, TPM error, PATH not in the vault,
DEST not empty), 2 usage error, 130/143 interrupted.`,
		Example: `  sealfs extract ~/Dropbox/backup.sealfs /tmp/restore
  sealfs extract --overwrite ~/Dropbox/backup.sealfs ~/restore photos/2024`,
		Args:              positional(2, 3),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.dest = args[1]
			if len(args) == 3 {
				o.path = args[2]
			}
			return a.cmdExtract(args[0], o)
		},
	}
	fs := c.Flags()
	a.addTPMFlag(fs)
	a.addPasswordFlags(fs)
	a.addSlotFlag(fs)
	addWithRecovery(fs, &o.withRecovery, "unlock")
	a.addRecoveryKeyFlag(fs)
	fs.BoolVar(&o.overwrite, "overwrite", false, "replace files already in DEST with the vault's version")
	fs.BoolVar(&o.skipExisting, "skip-existing", false, "keep files already in DEST and extract the rest")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	a.addCommonFlags(fs, "no progress bar")
	return c
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  positional(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := a.stdout.Write([]byte(versionString() + "\n"))
			return err
		},
	}
}

// Completion of positional arguments: directories for vaults and
// mountpoints, this user's sealfs mountpoints for unmount, slot IDs for
// revoke (read from the header; no password or TPM needed).

func completeDirs(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

func completeMountpoints(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, m := range sealfsMounts(false) {
		out = append(out, m.Mountpoint)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func completeSlots(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) != 1 {
		return completeDirs(cmd, args, toComplete)
	}
	return slotIDs(args[0]), cobra.ShellCompDirectiveNoFileComp
}
