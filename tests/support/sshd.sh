#!/usr/bin/env bash
# Starts an sshd on 127.0.0.1:2222 with a throwaway host key and user key, and names it
# `wheelship-test` in ~/.ssh/config, for the end-to-end deploys over ssh. Nothing listens
# beyond loopback. Idempotent: a running one is replaced.
set -euo pipefail
if ! command -v sshd >/dev/null 2>&1 && [[ ! -x /usr/sbin/sshd ]]; then
    echo "sshd.sh: installing openssh-server" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null
fi
dir=${WHEELSHIP_SSHD_DIR:-$HOME/.ssh/wheelship-test}
if [[ -f "$dir/sshd.pid" ]]; then
    kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
fi
rm -rf "$dir"
mkdir -p "$dir" /run/sshd
chmod 700 "$HOME/.ssh" "$dir"
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key"
cat > "$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port 2222
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
touch "$HOME/.ssh/config"
if ! grep -q '^Host wheelship-test$' "$HOME/.ssh/config"; then
    cat >> "$HOME/.ssh/config" <<CONF

Host wheelship-test
    HostName 127.0.0.1
    Port 2222
    User $(id -un)
    IdentityFile $dir/user_key
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
CONF
fi
chmod 600 "$HOME/.ssh/config"
for _ in $(seq 50); do
    if ssh -o BatchMode=yes -o ConnectTimeout=2 wheelship-test true 2>/dev/null; then
        echo "sshd.sh: wheelship-test is up (127.0.0.1:2222)" >&2
        exit 0
    fi
    sleep 0.1
done
echo "sshd.sh: sshd did not come up" >&2
exit 1
