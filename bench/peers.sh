#!/usr/bin/env bash
# mailgate against its peers in one run: Postfix for SMTP acceptance,
# Dovecot for POP3 RETR and IMAP (SEARCH, FETCH, memory per idle IDLE
# session), with the same client code (mailgate-bench) and the same
# messages. See bench/README.md ("Peers: bench/peers.sh").
#
#   bench/peers.sh            all runs: SMTP + POP3, IMAP, then logins
#   bench/peers.sh smtp       SMTP + POP3 only
#   bench/peers.sh imap       IMAP only
#   bench/peers.sh logins     repeated logins only (IMAP LOGIN, the IMAP
#                             login mix, POP3 sessions)
#
# Environment: MESSAGES (SMTP/POP3 run, default 5000), CLIENTS (50),
# SIZE (10240), IMAP_MESSAGES (10000), IMAP_IDLE (3000), IMAP_INBOX_IDLE (10:
# idle sessions on the filled INBOX, the large-mailbox rows), IMAP_REPEAT (3),
# LOGIN_CLIENTS (10), LOGIN_SECS (10),
# BIN_DIR (target/release; mailgate and mailgate-bench are built there
# with `cargo build --release` if missing), TMPDIR (where the servers keep
# their data: a real disk, not a tmpfs, or syncs cost nothing),
# PEER_ONLY=1 (measure the peers only, not mailgate).
#
# Needs root: the Postfix and Dovecot masters run as root and drop
# privileges themselves. Installs the Debian packages postfix,
# dovecot-imapd and dovecot-pop3d if missing (Postfix preseeded to "No
# configuration", service starts denied by policy-rc.d, so no system
# instance is configured or started), and creates a system user
# `mgbench` that owns the peers' mail. Everything else lives in one temp
# dir: Postfix runs as `postfix -c DIR` (never /etc/postfix), Dovecot as
# `dovecot -c DIR/dovecot.conf -F`, both on 127.0.0.1 only, and both are
# stopped and the dir removed on every way out.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

what="${1:-all}"
case "$what" in all | smtp | imap | logins) ;; *)
    echo "usage: bench/peers.sh [all|smtp|imap|logins]" >&2
    exit 2
    ;;
esac
MESSAGES="${MESSAGES:-5000}"
CLIENTS="${CLIENTS:-50}"
SIZE="${SIZE:-10240}"
IMAP_MESSAGES="${IMAP_MESSAGES:-10000}"
IMAP_IDLE="${IMAP_IDLE:-3000}"
IMAP_INBOX_IDLE="${IMAP_INBOX_IDLE:-10}"
IMAP_REPEAT="${IMAP_REPEAT:-3}"
LOGIN_CLIENTS="${LOGIN_CLIENTS:-10}"
LOGIN_SECS="${LOGIN_SECS:-10}"
BIN_DIR="${BIN_DIR:-target/release}"
PEER_ONLY="${PEER_ONLY:-}"
BENCH_USER=mgbench
DOMAIN=peer.test
PASSWORD="peer-$RANDOM$RANDOM"

say() { printf 'peers.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (the Postfix and Dovecot masters drop privileges themselves)"
[ "$(uname -s)" = Linux ] || die "Linux only (/proc is read for memory figures)"

# ---- packages -----------------------------------------------------------
missing=()
for p in postfix dovecot-imapd dovecot-pop3d; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # No system instance may start: deny service starts during the install
    # (unless a policy already does).
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        { [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
for u in postfix dovecot dovenull; do
    id "$u" >/dev/null 2>&1 || die "user $u missing (broken postfix/dovecot installation)"
done
if ! id "$BENCH_USER" >/dev/null 2>&1; then
    say "creating system user $BENCH_USER (owner of the peers' mail)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$BENCH_USER"
fi
MUID="$(id -u "$BENCH_USER")"
MGID="$(id -g "$BENCH_USER")"

# ---- binaries -----------------------------------------------------------
if [ ! -x "$BIN_DIR/mailgate-bench" ] || { [ -z "$PEER_ONLY" ] && [ ! -x "$BIN_DIR/mailgate" ]; }; then
    say "building mailgate and mailgate-bench (release)"
    cargo build --release -p mailgate -p mailgate-bench
fi
BENCH="$BIN_DIR/mailgate-bench"

# ---- the private instances ----------------------------------------------
ROOT="$(mktemp -d "${TMPDIR:-/tmp}/mailgate-peers-XXXXXX")"
chmod 755 "$ROOT"
DOVECOT_PID=""
POSTFIX_STARTED=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$POSTFIX_STARTED" ]; then
        MAIL_CONFIG="$ROOT/postfix/etc" postfix -c "$ROOT/postfix/etc" stop >/dev/null 2>&1 || true
        local pid
        pid="$(awk '{print $1; exit}' "$ROOT/postfix/spool/pid/master.pid" 2>/dev/null || true)"
        for _ in $(seq 100); do
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            say "Postfix master $pid still there; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    if [ -n "$DOVECOT_PID" ] && kill -0 "$DOVECOT_PID" 2>/dev/null; then
        kill -TERM "$DOVECOT_PID" 2>/dev/null || true
        for _ in $(seq 150); do
            kill -0 "$DOVECOT_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$DOVECOT_PID" 2>/dev/null; then
            say "Dovecot master $DOVECOT_PID still there; SIGKILL"
            kill -KILL "$DOVECOT_PID" 2>/dev/null || true
        fi
        wait "$DOVECOT_PID" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ]; then
        say "failed ($rc); Postfix log:"
        tail -n 20 "$ROOT/postfix/maillog" >&2 2>/dev/null || true
        say "Dovecot log:"
        tail -n 20 "$ROOT/dovecot/dovecot.log" >&2 2>/dev/null || true
    fi
    rm -rf "$ROOT"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

read -r SMTP_PORT POP3_PORT IMAP_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

# The mail of both peers: Maildirs under vmail/, owned by $BENCH_USER.
# Postfix's virtual(8) delivers there; Dovecot serves them.
mkdir -p "$ROOT/vmail/$DOMAIN"
chown -R "$MUID:$MGID" "$ROOT/vmail"

# Postfix: SMTP on 127.0.0.1:$SMTP_PORT; after the 250 (queue file
# fsynced), virtual(8) delivers into the Maildir (also fsynced).
PF="$ROOT/postfix"
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chmod 755 "$PF" "$PF/etc" "$PF/spool"
chown postfix:postfix "$PF/data"
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks_style = host
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
local_header_rewrite_clients =
smtp_dns_support_level = disabled
biff = no
maillog_file = $PF/maillog
maillog_file_prefixes = $ROOT
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $ROOT/vmail
virtual_mailbox_maps = hash:$PF/etc/vmailbox
virtual_uid_maps = static:$MUID
virtual_gid_maps = static:$MGID
virtual_minimum_uid = 1
message_size_limit = 104857600
virtual_mailbox_limit = 0
EOF
cat >"$PF/etc/vmailbox" <<EOF
pop@$DOMAIN $DOMAIN/pop/
imap@$DOMAIN $DOMAIN/imap/
imapbig@$DOMAIN $DOMAIN/imapbig/
EOF
# The master.cf the tests' private Postfix uses too.
sed "s/@LISTEN@/127.0.0.1:$SMTP_PORT/" "$REPO/tests/postfix-master.cf" >"$PF/etc/master.cf"
export MAIL_CONFIG="$PF/etc"
postmap -c "$PF/etc" "hash:$PF/etc/vmailbox"
postfix -c "$PF/etc" check
POSTFIX_STARTED=1
postfix -c "$PF/etc" start >&2

# Dovecot: POP3 on 127.0.0.1:$POP3_PORT, IMAP on 127.0.0.1:$IMAP_PORT,
# one passwd-file user per mailbox, limits raised for thousands of
# sessions (one imap process each).
DC="$ROOT/dovecot"
mkdir -p "$DC/run" "$DC/state"
# login0..loginN: one POP3 account per client of the login run.
login_users=()
for i in $(seq 0 $((LOGIN_CLIENTS - 1))); do login_users+=("login$i"); done
for u in pop imap imapbig "${login_users[@]}"; do
    echo "$u@$DOMAIN:{PLAIN}$PASSWORD:$MUID:$MGID::$ROOT/vmail/$DOMAIN/$u::"
done >"$DC/users"
chmod 640 "$DC/users"
chgrp dovecot "$DC/users"
SESSIONS=$((IMAP_IDLE + 200))
cat >"$DC/dovecot.conf" <<EOF
instance_name = mailgate-peers-$$
base_dir = $DC/run
state_dir = $DC/state
log_path = $DC/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = $MUID
last_valid_uid = $MUID
first_valid_gid = $MGID
last_valid_gid = $MGID
mail_location = maildir:$ROOT/vmail/%d/%n
passdb {
  driver = passwd-file
  args = $DC/users
}
userdb {
  driver = passwd-file
  args = $DC/users
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Archive {
    auto = create
  }
}
default_process_limit = $SESSIONS
default_client_limit = $((SESSIONS * 2))
protocol imap {
  mail_max_userip_connections = $SESSIONS
}
protocol pop3 {
  mail_max_userip_connections = $SESSIONS
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap {
  process_limit = $SESSIONS
}
service anvil {
  client_limit = $((SESSIONS * 3))
}
service auth {
  client_limit = $((SESSIONS * 3))
}
EOF
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
dovecot -c "$DC/dovecot.conf" -F </dev/null >>"$DC/dovecot.stdout" 2>&1 &
DOVECOT_PID=$!

wait_banner() { # NAME PORT PREFIX
    python3 - "$@" <<'EOF'
import socket, sys, time
name, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
deadline = time.monotonic() + 20
while True:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(5)
            if s.recv(512).startswith(prefix):
                sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"{name} on 127.0.0.1:{port} gives no {prefix.decode()} greeting")
    time.sleep(0.2)
EOF
}
wait_banner Postfix "$SMTP_PORT" 220
wait_banner "Dovecot POP3" "$POP3_PORT" +OK
wait_banner "Dovecot IMAP" "$IMAP_PORT" "* OK"
say "Postfix $(postconf -d -h mail_version 2>/dev/null) on 127.0.0.1:$SMTP_PORT; Dovecot $(dovecot --version | cut -d' ' -f1) (pid $DOVECOT_PID) on 127.0.0.1:$POP3_PORT (POP3), :$IMAP_PORT (IMAP); data in $ROOT"

export MAILGATE_BENCH_PEER_PASSWORD="$PASSWORD"
only=()
[ -z "$PEER_ONLY" ] || only=(--peer-only)
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# Postfix $(postconf -d -h mail_version 2>/dev/null), Dovecot $(dovecot --version | cut -d' ' -f1), TMPDIR ${TMPDIR:-/tmp} on $(df --output=fstype "${TMPDIR:-/tmp}" | tail -1)"
if [ "$what" = all ] || [ "$what" = smtp ]; then
    # Postfix's CPU (master and every daemon under it, including
    # virtual(8)'s deliveries) is measured like mailgate's, per message.
    pf_cpu=()
    PF_MASTER="$(awk '{print $1; exit}' "$PF/spool/pid/master.pid" 2>/dev/null || true)"
    [ -z "$PF_MASTER" ] || pf_cpu=(--peer-cpu-pid "$PF_MASTER")
    "$BENCH" --bin "$BIN_DIR/mailgate" --messages "$MESSAGES" --clients "$CLIENTS" --size "$SIZE" \
        --peer-smtp "127.0.0.1:$SMTP_PORT" --peer-pop3 "127.0.0.1:$POP3_PORT" \
        --peer-user "pop@$DOMAIN" --peer-name postfix_dovecot "${pf_cpu[@]}" "${only[@]}"
    echo "# load average after the SMTP/POP3 run: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [ "$what" = all ] || [ "$what" = imap ]; then
    "$BENCH" --bin "$BIN_DIR/mailgate" --imap --clients "$CLIENTS" --size "$SIZE" \
        --imap-messages "$IMAP_MESSAGES" --imap-idle "$IMAP_IDLE" --imap-repeat "$IMAP_REPEAT" \
        --peer-smtp "127.0.0.1:$SMTP_PORT" --peer-imap "127.0.0.1:$IMAP_PORT" --peer-pid "$DOVECOT_PID" \
        --peer-user "imap@$DOMAIN" --peer-name dovecot "${only[@]}"
    echo "# load average after the IMAP run: $(cut -d' ' -f1-3 /proc/loadavg)"
    # The large-mailbox rows (issue 17): idle sessions with the filled
    # INBOX selected, IMAP_INBOX_IDLE of them (10: Dovecot's default
    # mail_max_userip_connections, so both are compared per session as
    # Dovecot ships), on an account of their own.
    "$BENCH" --bin "$BIN_DIR/mailgate" --imap --clients "$CLIENTS" --size "$SIZE" \
        --imap-messages "$IMAP_MESSAGES" --imap-idle "$IMAP_INBOX_IDLE" --imap-idle-mailbox INBOX \
        --imap-repeat "$IMAP_REPEAT" \
        --peer-smtp "127.0.0.1:$SMTP_PORT" --peer-imap "127.0.0.1:$IMAP_PORT" --peer-pid "$DOVECOT_PID" \
        --peer-user "imapbig@$DOMAIN" --peer-name dovecot_inbox "${only[@]}"
    echo "# load average after the IMAP INBOX run: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [ "$what" = all ] || [ "$what" = logins ]; then
    "$BENCH" --bin "$BIN_DIR/mailgate" --logins --login-clients "$LOGIN_CLIENTS" --login-secs "$LOGIN_SECS" \
        --peer-smtp "127.0.0.1:$SMTP_PORT" --peer-imap "127.0.0.1:$IMAP_PORT" --peer-pop3 "127.0.0.1:$POP3_PORT" \
        --peer-user "imap@$DOMAIN" --peer-name dovecot "${only[@]}"
    echo "# load average after the login run: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
