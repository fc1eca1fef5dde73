#!/usr/bin/env bash
# demo.sh: what "make demo" shows. Installs postfix-rs into ./demo (fresh
# each time) and walks through the configuration steps of an install guide
# with the installed postconf, then starts the mail system on
# 127.0.0.1:2525, sends one message through SMTP and one through sendmail
# to a Maildir in ./demo, shows the log lines and the delivered messages,
# and leaves the mail system running. As root the daemons run as the
# "postfix" user (created, with the "postdrop" group, when missing, as
# Postfix's install guides do); as anybody else the install is
# unprivileged and everything runs as that user.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=$PWD/demo

# Shows a command as one would type it, then runs it.
step() {
    local arg shown=
    for arg in "$@"; do
        if [[ $arg =~ [^A-Za-z0-9_./=:@%+,-] ]]; then shown+=" '$arg'"; else shown+=" $arg"; fi
    done
    printf '\n$%s\n' "$shown"
    "$@" 2>&1 || true
}

PORT=2525
# A demo still running from last time goes first.
if [ -x "$DEMO/usr/sbin/postfix" ]; then
    "$DEMO/usr/sbin/postfix" -c "$DEMO/etc/postfix" stop >/dev/null 2>&1 || true
    for _ in $(seq 50); do
        [ -e "$DEMO/var/spool/postfix/pid/master.pid" ] || break
        sleep 0.1
    done
fi
if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), timeout=1); sys.exit(0)" 2>/dev/null; then
    echo "make demo: 127.0.0.1:$PORT is taken by another program; stop it first." >&2
    exit 1
fi
rm -rf "$DEMO"
mkdir -p "$DEMO"
if [ "$(id -u)" -eq 0 ]; then
    getent group postdrop >/dev/null || groupadd --system postdrop
    getent passwd postfix >/dev/null ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postfix
fi
./postfix-install -non-interactive "install_root=$DEMO" "tempdir=$DEMO" >/dev/null
CONF=$DEMO/etc/postfix
postconf() { "$DEMO/usr/sbin/postconf" -c "$CONF" "$@"; }
postmap() { "$DEMO/usr/sbin/postmap" -c "$CONF" "$@"; }
postalias() { "$DEMO/usr/sbin/postalias" -c "$CONF" "$@"; }
postfix() { "$DEMO/usr/sbin/postfix" -c "$CONF" "$@"; }
postcat() { "$DEMO/usr/sbin/postcat" -c "$CONF" "$@"; }
sendmail() { "$DEMO/usr/sbin/sendmail" -C "$CONF" "$@"; }

echo "postfix-rs is installed in $DEMO (configuration in $CONF)."
step postconf -n
step postconf -e 'myhostname = mail.example.com' 'inet_interfaces = loopback-only'
step postconf -x myhostname mydomain myorigin mydestination
step postconf -d mynetworks_style
step postconf -x mynetworks_style mynetworks
echo
echo "# A mistake from an install guide: the protocol names are lower case."
step postconf -e inet_protocols=IPv4
step postconf inet_protocols
step postconf -e inet_protocols=ipv4
step postconf -Mf smtp/inet qmgr
step postconf -Me 'submission/inet = submission inet n - n - - smtpd'
step postconf -Pe 'submission/inet/syslog_name=postfix/submission' \
    'submission/inet/smtpd_tls_security_level=encrypt'
step postconf -Mf submission
step grep -n '^inet_protocols\|^myhostname' "$CONF/main.cf"
echo
echo "# Relay rules in an access table, as the install guides keep them."
printf '192.168.1        OK\nspammer.example  REJECT\nbroken-line\n' >>"$CONF/access"
step postmap "hash:$CONF/access"
step postmap -q 192.168.1 "hash:$CONF/access"
step postmap -q SPAMMER.example "hash:$CONF/access"
step postalias "hash:$CONF/aliases"
step postalias -q postmaster "hash:$CONF/aliases"
step postmap -q 10.1.2.3 "inline:{10.1.2.3=REJECT}"

echo
echo "# The mail system itself: main.cf points into $DEMO, smtpd listens on"
echo "# 127.0.0.1:$PORT instead of port 25, and mail for demo@localhost goes to"
echo "# the Maildir $DEMO/Maildir/ (an alias, as /etc/aliases would say)."
LOG=$DEMO/var/log/maillog
MAILDIR=$DEMO/Maildir
mkdir -p "$DEMO/var/log" "$MAILDIR"
postconf -e "command_directory = $DEMO/usr/sbin" "daemon_directory = $DEMO/usr/libexec/postfix" \
    "queue_directory = $DEMO/var/spool/postfix" "data_directory = $DEMO/var/lib/postfix" \
    "maillog_file = $LOG" "maillog_file_prefixes = $DEMO" \
    "alias_maps = hash:$CONF/aliases" "alias_database = hash:$CONF/aliases" \
    "mail_spool_directory = $DEMO/var/mail" \
    'mydestination = $myhostname, localhost' 'mynetworks = 192.168.1.0/24'
[ "$(id -u)" -eq 0 ] || postconf -e "mail_owner = $(id -un)" "setgid_group = $(id -gn)"
# Files named in root's aliases are written with default_privs (nobody).
[ "$(id -u)" -ne 0 ] || chown "$(postconf -h default_privs)" "$MAILDIR"
printf 'demo: %s/\n' "$MAILDIR" >>"$CONF/aliases"
postalias "hash:$CONF/aliases"
sed -i "s/^smtp \( *\)inet/127.0.0.1:$PORT inet/" "$CONF/master.cf"
trap 'postfix stop >/dev/null 2>&1 || true' EXIT
step postfix start
echo
echo "# telnet localhost $PORT, as the install guides do on port 25. This"
echo "# client is not in mynetworks: mail for this host is welcome, relaying"
echo "# to another domain is not."
python3 - "$PORT" <<'PY'
import socket, sys, time
conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
replies = conn.makefile("rb")
def answer():
    while True:
        line = replies.readline().decode()
        print(line, end="")
        if line[3:4] != "-":
            return
answer()
for command in ["ehlo client.example", "mail from:<someone@client.example>", "rcpt to:<demo@localhost>",
                "rcpt to:<someone@other.example.net>", "data", None, "quit"]:
    if command is None:
        conn.sendall(b"Subject: hello over SMTP\r\n\r\nA first message.\r\n.\r\n")
        print("Subject: hello over SMTP\n\nA first message.\n.")
    else:
        print(command)
        conn.sendall(command.encode() + b"\r\n")
    answer()
PY
echo
echo "# The other door: sendmail, as 'echo body | mail -s subject user' uses it."
step sendmail -t <<'MSG'
To: demo@localhost
Subject: hello from sendmail

Handed to postdrop, picked up by pickup.
MSG
for _ in $(seq 100); do
    [ "$(find "$MAILDIR/new" -type f 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.1
done
echo
echo "# The journey in the log: smtpd, cleanup, qmgr, local."
step grep -E 'smtpd|pickup|cleanup|qmgr|local' "$LOG"
echo
echo "# The delivered messages, one file each in $MAILDIR/new:"
for file in "$MAILDIR"/new/*; do
    [ -e "$file" ] || { echo "(none yet: see the log above)"; break; }
    printf '\n==> %s <==\n' "$file"
    cat "$file"
done
trap - EXIT

cat <<TXT

postfix-rs is still running on 127.0.0.1:$PORT.
Talk to it:     telnet 127.0.0.1 $PORT      (or: swaks --server 127.0.0.1:$PORT --to demo@localhost)
Send with:      echo hi | $DEMO/usr/sbin/sendmail -C $CONF demo@localhost
Read the log:   tail -f $LOG
Mail arrives:   ls $MAILDIR/new
Stop it:        $DEMO/usr/sbin/postfix -c $CONF stop
TXT
