//! The `-h` text: a short man page (doc/coupafs.1 is the long one).

/// The `-h` text, a short man page.
pub(crate) fn help_text() -> String {
    HELP.to_string()
}

const HELP: &str = r#"NAME
    coupafs - mount a Coupa SFTP exchange as a local filesystem

SYNOPSIS
    coupafs [OPTIONS] [USER@]HOST:[REMOTE_DIR] MOUNTPOINT [-o OPT[,OPT...]]
    coupafs check [--json] [USER@]HOST:[REMOTE_DIR] [-p PORT] [-o OPT[,OPT...]]
    coupafs status [MOUNTPOINT]

DESCRIPTION
    Mounts the Coupa SFTP exchange HOST:REMOTE_DIR on MOUNTPOINT; the command
    line follows sshfs. Uploads are atomic: a file is written under a
    temporary name and renamed to its real name when it is closed, so Coupa
    never picks up a partial file. "coupafs check" logs in without mounting,
    checks Coupa's folders, write access, waiting files and file rules; it
    prints the overall state first ("COUPAFS OK|WARNING|CRITICAL - ...",
    with performance data after "|"), then one OK/WARN/FAIL line per check,
    and exits 0 (all OK), 1 (warnings), 2 (failures) or 3 (UNKNOWN: usage
    error, unusable options), as monitoring plugins do; --json prints one
    JSON object instead. "coupafs status" prints the state of every mount
    (or of MOUNTPOINT) from its status file, "stale" when its process is
    gone; it exits 0 (all connected), 1 (not connected or stale) or 3 (no
    such mount).

OPTIONS
    Options may come before, between or after the arguments; -o may be
    repeated or glued (-oPort=22); write a comma inside a value as \,.
    ssh's own option names (Port, User, IdentityFile, ...) are
    case-insensitive, as in ssh; all other option names are lowercase.

  General
    -h, --help                 print this help and exit
    -V, --version              print the version and exit
    -f                         stay in the foreground
    -d, --debug, -o debug      print debug messages; implies -f
    -o sshfs_debug             same as -o debug
    -o sftp_debug              log each SFTP request and reply (type, id,
                               path, status, time; never file contents)
    -s                         single-threaded, same as -o threads=1
    -o threads=N               FUSE request threads, 1-256 (default 16)
    -o fsname=NAME             source name shown by mount(8) and df
    -o log_file=PATH           append the log to PATH (created 0600; a
                               symlink is refused) instead of stderr/syslog
    -o reconnect               accepted; coupafs always reconnects
    -v, -o sshfs_verbose       accepted (no ssh program); see sftp_debug
    --                         end of options

  SSH and login
    -p PORT, -o Port=PORT      server port (default 22)
    -o User=NAME               login name, when the target has no USER@
    -o IdentityFile=PATH       private key; repeat to offer several keys
    -o passphrase_file=PATH    file holding the private key's passphrase
    -o password_file=PATH      file holding the login password
    -o UserKnownHostsFile=PATH known_hosts file for the host key check
    -o StrictHostKeyChecking=yes|accept-new|no
                               unknown host key: refuse (yes, the default),
                               add to known_hosts (accept-new), accept (no);
                               a key that differs from the one in
                               known_hosts is always refused, even with no
    -o HostKeyFingerprint=SHA256:BASE64
                               accept only this host key (ssh-keygen -l)
    -o GlobalKnownHostsFile=PATH
                               system known_hosts, read only (default
                               /etc/ssh/ssh_known_hosts; "none" reads none).
                               Lines marked @revoked refuse that key;
                               @cert-authority lines are ignored
    -o Ciphers=LIST, -o KexAlgorithms=LIST, -o HostKeyAlgorithms=LIST,
       -o MACs=LIST            allowed algorithms, as in ssh_config(5):
                               NAME\,NAME..., or +LIST, -LIST, ^LIST to
                               add, remove or put first (write the comma
                               as \, in -o); a name libssh2 lacks is an
                               error when connecting
    -o IdentitiesOnly=yes|no   yes: offer only the IdentityFile keys, no
                               ssh-agent keys (default no)
    -o PubkeyAuthentication=yes|no
                               no: offer no keys at all (default yes)
    -o PasswordAuthentication=yes|no
                               no: never send the password (default yes)
    -o BatchMode=yes|no        accepted; coupafs never prompts
    -F FILE, -o ssh_config=FILE
                               ssh client configuration to read instead of
                               ~/.ssh/config; "none" reads none. Its Host
                               blocks may set HostName, Port, User,
                               IdentityFile, UserKnownHostsFile,
                               GlobalKnownHostsFile, StrictHostKeyChecking,
                               Ciphers, KexAlgorithms, HostKeyAlgorithms,
                               MACs, IdentitiesOnly, PubkeyAuthentication,
                               PasswordAuthentication, BatchMode,
                               KbdInteractiveAuthentication, ProxyCommand,
                               ProxyJump and AddressFamily; the command
                               line wins
    -o ServerAliveInterval=SECS
                               keepalive interval, 0 disables (default 15)
    -o ServerAliveCountMax=N   unanswered keepalives before the connection
                               counts as lost (default 3)
    -o ConnectTimeout=SECS     connection timeout (default 15)
    -o max_conns=N             SFTP connections, 1-4 (default 2); Coupa
                               allows 5 connections per account
    -o IdentityAgent=none      offer no ssh-agent keys (as IdentitiesOnly=yes)
    -C                         same as -o Compression=yes: accepted; the
                               stream is sent uncompressed
    Every other sshfs 3.7 option and ssh option sshfs passes on (Cipher,
    PreferredAuthentications, LogLevel, TCPKeepAlive, ControlMaster,
    ControlPath, ControlPersist, CheckHostIP, ...) is accepted without
    effect (one info line at mount says why) or refused with the reason
    and what to use instead, e.g. HostKeyAlias, BindAddress,
    CertificateFile, ssh_command, directport, idmap=file, -1. The table
    is in doc/OPERATIONS.md, "Coming from sshfs".
    password= and password_stdin are refused: use password_file= or
    COUPAFS_PASSWORD.

  Proxies and addresses
    -o ProxyCommand=CMD        run CMD with /bin/sh and speak SSH over its
                               stdin/stdout (%h host, %p port, %r user, %%
                               a percent sign); "none" disables. A new CMD
                               runs for every connection; its stderr goes
                               to the log
    -o ProxyJump=[USER@]HOST[:PORT][\,...]
                               reach the server through an SSH jump host,
                               using OpenSSH's "ssh -W" (its known_hosts,
                               keys, agent; BatchMode); -F FILE is passed on
    -o proxy=URL|env|none      HTTP CONNECT (http://[USER:PASS@]HOST:PORT)
                               or SOCKS5 (socks5://[USER:PASS@]HOST:PORT)
                               proxy; env: the URL in all_proxy, else
                               https_proxy (read only when asked)
    -o no_proxy=HOST\,.DOMAIN...
                               reach these directly instead of through
                               proxy= (default: the no_proxy variable)
    -o AddressFamily=any|inet|inet6
                               use IPv4 and IPv6 (any, default), IPv4 only
                               (inet) or IPv6 only (inet6)
    -o KbdInteractiveAuthentication=yes|no
                               when the server offers no "password" method,
                               answer keyboard-interactive password prompts
                               from the password (default yes)
    Only one of ProxyCommand, ProxyJump and proxy may be given; the ssh
    config file may set ProxyCommand, ProxyJump and AddressFamily.

  Cache and timeouts
    -o cache_timeout=SECS      metadata cache lifetime (default 5); also
                               dcache_timeout=, entry_timeout=, attr_timeout=
    -o cache=yes|no, dir_cache=yes|no
                               no turns the metadata cache off
    -o timeout=SECS            longest one system call (open, close,
                               stat, ...) waits for an unreachable server,
                               reconnects and retries included; then it
                               fails with EIO (default 30)
    -o delay_connect           mount at once and connect in the background
                               (boot while the server is down); operations
                               fail with EIO after timeout= until it answers
    -o kernel_cache, auto_cache, negative_timeout=, dcache_max_size=,
       dcache_{stat,link,dir}_timeout=
                               accepted without effect
    SECS may have a fraction, e.g. 0.5.

  Uploads
    -o upload_dir=DIR          write temporary files in remote DIR, then
                               rename them into place
    -o temp_prefix=STR         temporary names are STR + NAME +
                               .coupafs-XXXXXX (default ".")
    -o spool_dir=PATH          local directory for the write-behind spool
    -o spool_max=MiB           spool size limit in MiB (default 4096)
    -o spare_temps=N           keep up to N empty temp files open per folder
                               where files are being created, so close()
                               skips the OPEN round trip (default 8; 0: off)
    -o strict_setstat          report chmod/utime the server refuses as
                               errors (default: ignore them)

  FUSE and permissions
    -o ro, -o rw               read-only, read-write (default rw)
    -o allow_other             let all users access the mount (needs
                               user_allow_other in /etc/fuse.conf); implies
                               default_permissions
    -o allow_root              let root access the mount too
    -o default_permissions     let the kernel check file modes
    -o no_default_permissions  with allow_other: do not check modes, so
                               every local user acts with the SFTP
                               account's rights (unsafe; logs a warning)
    -o uid=N, -o gid=N         show every file as owned by user/group N
    -o umask=OCTAL             clear these mode bits, e.g. 022
    -o follow_symlinks         show what symlinks point to, not the links
    -o contain_symlinks        keep symlinks from leading out of REMOTE_DIR
                               (default) and make absolute ones inside it
                               relative; nocontain_symlinks (sshfs:
                               no_contain_symlinks) turns it off
    -o auto_unmount            unmount when coupafs dies, even by SIGKILL
                               (fusermount3 stays behind to do it); implies
                               allow_root unless allow_other is given
    -o subtype=, idmap=user|none, workaround=, big_writes, max_read=N,
       max_write=N, transform_symlinks, direct_io, nonempty, atime, noatime,
       relatime, nodiratime
                               accepted without effect

  mount(8) and fstab
    defaults, auto, noauto, _netdev, nofail, user, nouser, users, owner,
    dev, nodev, suid, nosuid, exec, noexec, sync, async, atime, noatime,
    relatime, nodiratime, x-*, comment=
                               accepted and ignored
    Run as mount.coupafs or mount.fuse.coupafs, mount(8)'s flags -s -f -n
    -v are ignored. Without -f the command returns once the mount is live
    (exit 0) or has failed (exit 1, the reason on stderr); the daemon then
    logs to log_file= if given, else to syslog (/dev/log, else journald's
    syslog socket).

ENVIRONMENT
    COUPAFS_PASSWORD           login password, instead of password_file=;
                               erased from the process environment at start
    SSH_AUTH_SOCK              ssh-agent socket; its keys are offered
    COUPAFS_LOG                log filter, e.g. debug or coupafs=debug
    all_proxy, https_proxy     proxy URL, used only with -o proxy=env
    no_proxy                   hosts reached directly despite -o proxy=
    NOTIFY_SOCKET              set by systemd (Type=notify): READY=1 is
                               sent once the mount is live

EXAMPLES
    Mount with a key, then unmount:
        coupafs -o IdentityFile=$HOME/.ssh/coupa user@host:/ /mnt/coupa
        fusermount3 -u /mnt/coupa

    /etc/fstab line (mounts at boot even while the server is down):
        user@host:/ /mnt/coupa fuse.coupafs _netdev,nofail,delay_connect,IdentityFile=/etc/coupafs/id_rsa,UserKnownHostsFile=/etc/coupafs/known_hosts 0 0

    Check the connection and login without mounting:
        coupafs check -p 2222 -o IdentityFile=$HOME/.ssh/coupa user@host:/

    Show the state of every mount:
        coupafs status
"#;
