#!/usr/bin/env bash
# demo.sh: what "make demo" shows. Installs postfix-rs into ./demo (fresh
# each time) and walks through the configuration steps of an install guide
# with the installed postconf. As root the install is a package tree (no
# accounts needed); as anybody else it is an unprivileged install.
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

rm -rf "$DEMO"
mkdir -p "$DEMO"
if [ "$(id -u)" -eq 0 ]; then
    ./postfix-install -non-interactive -package "install_root=$DEMO" "tempdir=$DEMO" >/dev/null
else
    ./postfix-install -non-interactive "install_root=$DEMO" "tempdir=$DEMO" >/dev/null
fi
CONF=$DEMO/etc/postfix
postconf() { "$DEMO/usr/sbin/postconf" -c "$CONF" "$@"; }
postmap() { "$DEMO/usr/sbin/postmap" -c "$CONF" "$@"; }
postalias() { "$DEMO/usr/sbin/postalias" -c "$CONF" "$@"; }

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
cat <<TXT

Try more:  $DEMO/usr/sbin/postconf -c $CONF -n
           man -l $DEMO/usr/local/man/man5/postconf.5
master and the postfix command are built; the mail daemons (smtpd,
cleanup, qmgr, local...) are not yet, so "make demo" will start a real
mail system once they are.
TXT
