# bash completion for coupafs(1)                           -*- shell-script -*-
#
# Installed as /usr/share/bash-completion/completions/coupafs (the Debian
# package does this). Completes flags, -o option names (NAME= for options
# with a value), the values of a few (yes/no choices, file names), items
# after commas (-o ro,allow_o<TAB>), hosts from ~/.ssh/config for the
# target, and directories for the mountpoint.

# Options that take a value (completed as NAME=).
_coupafs_value_opts="Port User IdentityFile passphrase_file password_file
UserKnownHostsFile StrictHostKeyChecking HostKeyFingerprint ssh_config
ServerAliveInterval ServerAliveCountMax ConnectTimeout max_conns threads fsname
cache_timeout dcache_timeout entry_timeout attr_timeout cache timeout
upload_dir temp_prefix spool_dir spool_max spare_temps uid gid umask subtype idmap
workaround max_read dir_cache comment Compression Ciphers Cipher BatchMode
PasswordAuthentication PreferredAuthentications PubkeyAuthentication
IdentitiesOnly LogLevel TCPKeepAlive ControlMaster ControlPath ControlPersist
GlobalKnownHostsFile KexAlgorithms HostKeyAlgorithms MACs IdentityAgent CheckHostIP
max_write negative_timeout dcache_max_size dcache_stat_timeout dcache_link_timeout
dcache_dir_timeout dcache_clean_interval dcache_min_clean_interval ac_attr_timeout
writeback_cache ssh_protocol ProxyCommand ProxyJump proxy no_proxy AddressFamily
KbdInteractiveAuthentication log_file"

# Options without a value.
_coupafs_flag_opts="debug sshfs_debug sftp_debug reconnect ro rw allow_other allow_root
default_permissions no_default_permissions follow_symlinks contain_symlinks nocontain_symlinks
strict_setstat kernel_cache auto_cache big_writes delay_connect nonempty atime
noatime relatime nodiratime defaults auto noauto _netdev nofail user nouser
users owner dev nodev suid nosuid exec noexec sync async auto_unmount
no_contain_symlinks transform_symlinks sshfs_verbose direct_io no_check_root
sshfs_sync no_readahead sync_readdir disable_hardlink noauto_cache no_rofd_flush"

_coupafs_flags="-h --help -V --version -f -d --debug -s -o -p -F -C -v --json"

# Completions for one -o item; $1 is the item typed so far. Prints full
# items, one per line.
_coupafs_opt_item() {
    local item=$1 name value
    if [[ $item == *=* ]]; then
        name=${item%%=*}
        value=${item#*=}
        case ${name,,} in
            stricthostkeychecking)
                compgen -P "$name=" -W "yes accept-new no" -- "$value" ;;
            cache | dir_cache | identitiesonly | pubkeyauthentication | \
            passwordauthentication | batchmode | compression | checkhostip | kbdinteractiveauthentication)
                compgen -P "$name=" -W "yes no" -- "$value" ;;
            idmap)
                compgen -P "$name=" -W "user none" -- "$value" ;;
            identityagent)
                compgen -P "$name=" -W "none SSH_AUTH_SOCK" -- "$value" ;;
            addressfamily)
                compgen -P "$name=" -W "any inet inet6" -- "$value" ;;
            proxy)
                compgen -P "$name=" -W "env none http:// socks5://" -- "$value" ;;
            identityfile | passphrase_file | password_file | userknownhostsfile | \
            globalknownhostsfile)
                compgen -P "$name=" -f -- "$value" ;;
            ssh_config)
                compgen -P "$name=" -f -- "$value"
                compgen -P "$name=" -W "none" -- "$value" ;;
            spool_dir)
                compgen -P "$name=" -d -- "$value" ;;
            log_file)
                compgen -P "$name=" -f -- "$value" ;;
        esac
        return
    fi
    local words=() w
    for w in $_coupafs_value_opts; do words+=("$w="); done
    for w in $_coupafs_flag_opts; do words+=("$w"); done
    compgen -W "${words[*]}" -- "$item"
}

# Hosts named in ~/.ssh/config (no wildcards), as HOST: targets.
_coupafs_hosts() {
    local cfg=${HOME:-~}/.ssh/config
    [[ -r $cfg ]] || return
    awk 'tolower($1) == "host" { for (i = 2; i <= NF; i++) if ($i !~ /[*?!]/) print $i ":" }' "$cfg"
}

_coupafs() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    # bash splits words at = and : (COMP_WORDBREAKS); work on the
    # whitespace-separated words of the line instead, then hand back only
    # the part bash calls the current word.
    local line=${COMP_LINE:0:COMP_POINT}
    local raw=${line##*[[:space:]]}
    local before=${line%"$raw"}
    local -a words
    read -r -a words <<<"$before"
    local prev=${words[${#words[@]}-1]}

    local cands=() c
    if [[ $prev == -o ]]; then
        mapfile -t cands < <(_coupafs_complete_opts "$raw" "")
    elif [[ $raw == -o?* ]]; then
        mapfile -t cands < <(_coupafs_complete_opts "${raw#-o}" "-o")
    elif [[ $prev == -F ]]; then
        mapfile -t cands < <(compgen -f -- "$raw"; compgen -W "none" -- "$raw")
    elif [[ $prev == -p ]]; then
        return
    elif [[ $raw == -* ]]; then
        mapfile -t cands < <(compgen -W "$_coupafs_flags" -- "$raw")
    elif [[ ${words[1]:-} == status ]]; then
        # `coupafs status [MOUNTPOINT]`
        ((${#words[@]} == 2)) && mapfile -t cands < <(compgen -d -- "$raw")
    else
        # Positionals so far: words that are not options or their values.
        local n=0 i skip=0
        for ((i = 1; i < ${#words[@]}; i++)); do
            if ((skip)); then skip=0; continue; fi
            case ${words[i]} in
                -o | -p | -F) skip=1 ;;
                -*) ;;
                check) ((i == 1)) || n=$((n + 1)) ;;
                *) n=$((n + 1)) ;;
            esac
        done
        if ((n == 0)); then
            local extra="check status"
            [[ ${words[1]:-} == check ]] && extra=
            mapfile -t cands < <(compgen -W "$(_coupafs_hosts) $extra" -- "$raw")
        else
            mapfile -t cands < <(compgen -d -- "$raw")
        fi
    fi

    # Hand back what replaces bash's current word (a suffix of $raw).
    local strip=$((${#raw} - ${#cur}))
    COMPREPLY=()
    for c in "${cands[@]}"; do
        [[ -n $c ]] && COMPREPLY+=("${c:strip}")
    done
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=,:] ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}

# $1: the -o argument typed so far (comma-separated items); $2: a prefix
# (-o when glued). Completes the last item, keeping the earlier ones.
_coupafs_complete_opts() {
    local arg=$1 prefix=$2 head="" last=$1
    if [[ $arg == *,* ]]; then
        head=${arg%,*},
        last=${arg##*,}
    fi
    local c
    while IFS= read -r c; do
        [[ -n $c ]] && printf '%s\n' "$prefix$head$c"
    done < <(_coupafs_opt_item "$last")
}

complete -F _coupafs coupafs mount.coupafs
