#!/usr/bin/env bash
# A throwaway Dovecot IMAP server for the mail-reader tests: its own config, users and
# Maildir under DIR, listening on 127.0.0.1 only (plain+STARTTLS on one port, IMAPS on
# another, a self-signed certificate made here). Nothing of the system's Dovecot is used.
#
#   .ci/dovecot.sh start DIR   starts it; writes DIR/env (GATEWAY_TEST_IMAP_* lines)
#   .ci/dovecot.sh stop DIR    stops it
set -euo pipefail

command=${1:?usage: dovecot.sh start|stop DIR}
dir=${2:?usage: dovecot.sh start|stop DIR}
conf="$dir/dovecot.conf"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case "$command" in
start)
    command -v dovecot >/dev/null || { echo "dovecot is not installed (apt-get install dovecot-imapd)" >&2; exit 3; }
    mkdir -p "$dir/run" "$dir/state" "$dir/home"
    dir=$(cd "$dir" && pwd)
    conf="$dir/dovecot.conf"
    port=$(free_port)
    tls_port=$(free_port)
    user=replies
    password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')
    if [ "$(id -u)" = 0 ]; then
        internal=dovecot; login=dovenull; mail_uid=dovecot; mail_gid=dovecot
        id dovecot >/dev/null 2>&1 || { echo "user dovecot missing" >&2; exit 3; }
    else
        internal=$(id -un); login=$(id -un); mail_uid=$(id -u); mail_gid=$(id -g)
    fi
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
    chmod 600 "$dir/key.pem"
    echo "$user:{PLAIN}$password" > "$dir/users"
    cat > "$conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = $internal
default_login_user = $login
first_valid_uid = 0
ssl = yes
ssl_cert = <$dir/cert.pem
ssl_key = <$dir/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = static
  args = uid=$mail_uid gid=$mail_gid home=$dir/home/%u
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $tls_port
    ssl = yes
  }
}
service anvil {
  chroot =
}
service imap-login {
  chroot =
}
CONF
    if [ "$(id -u)" = 0 ]; then chown -R dovecot:dovecot "$dir/home"; chmod 755 "$dir"; fi
    dovecot -c "$conf" </dev/null >/dev/null 2>&1
    for _ in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" \
            2>/dev/null && break
        sleep 0.1
    done
    cat > "$dir/env" <<ENV
GATEWAY_TEST_IMAP_HOST=127.0.0.1
GATEWAY_TEST_IMAP_PORT=$port
GATEWAY_TEST_IMAP_TLS_PORT=$tls_port
GATEWAY_TEST_IMAP_USER=$user
GATEWAY_TEST_IMAP_PASSWORD=$password
GATEWAY_TEST_IMAP_CA_FILE=$dir/cert.pem
ENV
    echo "dovecot on 127.0.0.1:$port (STARTTLS) and :$tls_port (IMAPS); settings in $dir/env"
    ;;
stop)
    if [ -f "$conf" ]; then
        doveadm -c "$conf" stop 2>/dev/null || {
            pid=$(cat "$dir/run/master.pid" 2>/dev/null || true)
            [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
        }
    fi
    ;;
*)
    echo "usage: dovecot.sh start|stop DIR" >&2
    exit 2
    ;;
esac
