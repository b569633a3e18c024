package main

import "github.com/spf13/cobra"

// The text of `sealfs --help` and of the help topics (`sealfs help TOPIC`),
// which sealfs(1) shows as sections of their own.

const rootLong = `sealfs keeps a folder encrypted, file by file and names too, in a directory
that a cloud service (Dropbox, Google Drive, Nextcloud, Syncthing...) syncs,
and shows it decrypted only while it is mounted. Point restic, borg, rsync or
tar at the mount; unmount to lock. The vault's key is sealed in this
machine's TPM 2.0 behind your password, so the TPM, not the cloud, limits
password guessing; the recovery key that init shows once opens the vault on
any machine.

Flags go before or after the command name, in GNU style (--name, -x). A
password is never a command-line argument: see ` + "`sealfs help passwords`" + `.`

// recoveryKeyDescription is how every message, prompt and document
// describes the recovery key (docs/format.md §9).
const recoveryKeyDescription = `The recovery key is 72 characters: 8 groups of 9, each 8
hexadecimal digits (0-9, a-f) of the 256-bit key followed by a check digit
that catches typos.`

// recoveryKeyShort is the same, for one line.
const recoveryKeyShort = "72 characters: 8 groups of 9, each 8 hex digits and a check digit"

type helpTopic struct {
	name, title, short, long string
}

var topics = []helpTopic{
	{"passwords", "PASSWORDS", "where sealfs reads the password from", `A password is never accepted as an argument. Commands that need one take it
from the first of:

  --password-file FILE   its first line (- for standard input)
  --extpass CMD          the standard output of CMD, run with sh -c
  $SEALFS_PASSWORD_FILE, $SEALFS_EXTPASS
                         the same, from the environment (systemd units)
  $SEALFS_PASSWORD       read once and wiped from the process at start; before
                         that it is visible in /proc/PID/environ to the same
                         user and root, and to anything that inherited it
  $CREDENTIALS_DIRECTORY/sealfs.password
                         a systemd credential (LoadCredential=,
                         LoadCredentialEncrypted=)
  the terminal           asked without echo

A password file gives the password to whoever can read it: on this machine
that opens the vault (the TPM is here), elsewhere it is useless without the
TPM. Keep it 0600, or use LoadCredentialEncrypted= so that systemd seals it
with the TPM too.`},
	{"recovery-key", "RECOVERY KEY", "what the recovery key is and when to use it", recoveryKeyDescription + `
Spaces, dashes and case do not matter when you type it; a typo is named by its
group before anything is tried. init shows it once: write it down or print it
and keep it away from the machine (a safe, a password manager on another
device). It opens the vault on any machine:

  sealfs mount --with-recovery CIPHERDIR MOUNTPOINT
          now, changing nothing (TPM locked out, cleared, or elsewhere)
  sealfs recover CIPHERDIR
          a new TPM slot and password for this machine, replacing its old
          slot (forgotten password, tries used up, TPM cleared or replaced)
  sealfs enroll CIPHERDIR
          an extra TPM slot for this machine, keeping all others (a new or
          second machine)

Without the recovery key, a lost password or TPM loses the vault.`},
	{"mount-options", "MOUNT OPTIONS", "mount(8), /etc/fstab and -o options", `sealfs follows mount.fuse3(8)'s convention: mount -t fuse.sealfs runs
"sealfs CIPHERDIR MOUNTPOINT -o OPTIONS", so the sealfs binary must be in the
PATH of mount (root's: /usr/local/bin, /usr/bin). Installing it as
/sbin/mount.fuse.sealfs (a symlink to sealfs) makes mount(8) call it directly.

  mount -t fuse.sealfs -o passfile=/etc/sealfs/backup.pw /srv/cloud/backup /mnt/backup

  # /etc/fstab
  /srv/cloud/backup  /mnt/backup  fuse.sealfs  noauto,nofail,x-systemd.automount,x-systemd.idle-timeout=15min,passfile=/etc/sealfs/backup.pw,idle=30m  0 0

Options (also sealfs mount -o):
  ro, rw            read-only or read-write (default)
  allow_other       let other users in (needs user_allow_other in /etc/fuse.conf unless root)
  nonempty          mount even if MOUNTPOINT holds files
  idle=DURATION     unmount after that long without activity; minutes (30) or
                    with a unit (90s, 30m, 1h30m); 0 never
  tpm=SPEC          as --tpm
  passfile=FILE     as --password-file
  slot=ID           as --slot
  debug             log every FUSE request
mount(8) and systemd's own options (noauto, nofail, _netdev, user, users,
x-systemd.*, x-*, comment=...) and the generic dev, suid, exec, atime, sync
ones are accepted and left to them; sealfs always mounts nosuid,nodev. Any
other option is an error. Without passfile= the password is asked on the
terminal, or taken from $CREDENTIALS_DIRECTORY/sealfs.password.`},
	{"exit-status", "EXIT STATUS", "what the exit status means", `Every command: 0 success, 1 failure (the message says why), 2 usage error
(an unknown flag or a missing argument), 128+N when ended by signal N: 130
SIGINT, 143 SIGTERM, 129 SIGHUP. An interrupted command puts the terminal
back, takes back a vault init had not finished, and stops a software TPM
it started.

fsck, as fsck(8): 0 no damage found (conflict copies and a sync in progress
are notes, not damage), 1 problems found and all repaired (--repair), 4
problems found and left, 8 could not run (wrong password, TPM error,
unreadable folder).

extract: 0 everything extracted intact, 4 extracted with problems (listed),
8 could not run (wrong password, TPM error, PATH not in the vault, DEST not
empty).`},
	{"environment", "ENVIRONMENT", "environment variables sealfs reads", `  SEALFS_TPM              the TPM when --tpm is not given
  SEALFS_PASSWORD         the password (see ` + "`sealfs help passwords`" + `)
  SEALFS_PASSWORD_FILE    as --password-file
  SEALFS_EXTPASS          as --extpass
  CREDENTIALS_DIRECTORY   set by systemd: sealfs.password there is the password
  XDG_RUNTIME_DIR         mount daemons' control sockets and logs: $XDG_RUNTIME_DIR/sealfs
  XDG_STATE_HOME          this machine's record of the vault slots it uses
                          ($XDG_STATE_HOME/sealfs/pins.json, default ~/.local/state)
  JOURNAL_STREAM, NOTIFY_SOCKET
                          set by systemd: a mount logs to the journal and, in
                          the foreground, tells systemd when it is ready`},
	{"files", "FILES", "where sealfs keeps things", `  CIPHERDIR/sealfs.vault    the vault header: keyslots, two checksummed copies
  $XDG_RUNTIME_DIR/sealfs/  a mount's control socket and log (ID.sock, ID.log);
                            sealfs mounts and the mount message name the log
  ~/.local/state/sealfs/pins.json
                            the TPM slots this machine made or unlocked, per
                            vault folder: a slot changed in the cloud is refused
                            before a password try is spent on it
  swtpm:DIR                 a software TPM's whole state: whoever copies DIR can
                            guess passwords without the TPM's limits
  dist/systemd/             units to mount at boot (sealfs@.service) or login
                            (user/sealfs@.service)`},
}

// helpTopics returns the topics as cobra help-topic commands (no Run).
func helpTopics() []*cobra.Command {
	var out []*cobra.Command
	for _, t := range topics {
		out = append(out, &cobra.Command{Use: t.name, Short: t.short, Long: t.long})
	}
	return out
}
