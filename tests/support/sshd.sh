#!/usr/bin/env bash
# Makes sure an sshd for the end-to-end deploys over ssh answers on loopback, and prints on
# stdout the ssh alias to reach it (what WHEELSHIP_SSH_HOST should be): `wheelship-test`
# (127.0.0.1:2222, named in ~/.ssh/config, a throwaway host key and user key in
# ~/.ssh/wheelship-test) unless that port is taken by something else. Nothing listens beyond
# loopback.
#
# Two runs on one machine never break each other: an sshd that already answers the alias is
# reused, never killed or replaced (a test run in progress may be using it); when the port is
# held by something that does not answer as that sshd, another free port is taken under the
# alias `wheelship-test-PORT`, with keys of its own.
set -euo pipefail
if ! command -v sshd >/dev/null 2>&1 && [[ ! -x /usr/sbin/sshd ]]; then
    echo "sshd.sh: installing openssh-server" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi
alias=${WHEELSHIP_SSH_ALIAS:-wheelship-test}
port=${WHEELSHIP_SSHD_PORT:-2222}
dir=${WHEELSHIP_SSHD_DIR:-$HOME/.ssh/$alias}
mkdir -p "$HOME/.ssh"
chmod 700 "$HOME/.ssh"
touch "$HOME/.ssh/config"
chmod 600 "$HOME/.ssh/config"

answers() {
    ssh -o BatchMode=yes -o ConnectTimeout=2 "$1" true 2>/dev/null
}

# Whether something listens on 127.0.0.1:PORT.
taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if grep -q "^Host $alias\$" "$HOME/.ssh/config" && answers "$alias"; then
    echo "sshd.sh: $alias already answers: reusing it" >&2
    echo "$alias"
    exit 0
fi
if taken "$port"; then
    # Not ours (or not answering): leave it alone, take another port.
    for p in $(seq 2223 2299); do
        if ! taken "$p"; then port=$p; break; fi
    done
    alias="wheelship-test-$port"
    dir="$HOME/.ssh/$alias"
    if grep -q "^Host $alias\$" "$HOME/.ssh/config" && answers "$alias"; then
        echo "$alias"
        exit 0
    fi
fi

# A fresh sshd: no run uses this directory (nothing answers with its keys).
if [[ -f "$dir/sshd.pid" ]] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
    echo "sshd.sh: an sshd of $dir runs but does not answer; leaving it, and failing" >&2
    exit 1
fi
rm -rf "$dir"
mkdir -p "$dir" /run/sshd
chmod 700 "$dir"
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key"
cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
CONF
cp "$dir/user_key.pub" "$dir/authorized_keys"
/usr/sbin/sshd -f "$dir/sshd_config"
if ! grep -q "^Host $alias\$" "$HOME/.ssh/config"; then
    cat >> "$HOME/.ssh/config" <<CONF

Host $alias
    HostName 127.0.0.1
    Port $port
    User $(id -un)
    IdentityFile $dir/user_key
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
CONF
fi
for _ in $(seq 50); do
    if answers "$alias"; then
        echo "sshd.sh: $alias is up (127.0.0.1:$port)" >&2
        echo "$alias"
        exit 0
    fi
    sleep 0.1
done
echo "sshd.sh: sshd did not come up" >&2
exit 1
