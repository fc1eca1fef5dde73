# postfix-rs: build, install and test.
#
#   make                      build everything (release), and the generated man pages
#   make install              install, asking the same questions as Postfix
#   make install install_root=/tmp/x ...
#                             install without questions; any of the 15
#                             installation parameters may be given this way
#   make package              build a package tree (asks, like make install)
#   make non-interactive-package install_root=/tmp/pkg ...
#                             the same for scripts: no questions
#   make demo                 install into ./demo and show the configuration tools
#   make test                 everything CI runs (installs missing tools first)
#   make bench                time postmap and mail delivery against Debian's
#                             Postfix (as root; needs test-tools)
#   make clean                remove what the build made

CARGO  ?= cargo
PYTHON ?= python3
SHELL  := /bin/bash

INSTALL_PARAMS := install_root tempdir config_directory command_directory \
	daemon_directory data_directory html_directory mail_owner mailq_path \
	manpage_directory newaliases_path queue_directory readme_directory \
	sendmail_path setgid_group

# 'name=value' for each installation parameter given on make's command line
# (and only those: a variable that happens to be in the environment is not
# an answer to an install question).
INSTALL_ARGS = $(strip $(foreach p,$(INSTALL_PARAMS),\
	$(if $(filter command line,$(origin $(p))),'$(p)=$($(p))')))

POSTCONF5 := target/man/man5/postconf.5

.PHONY: all demo install package non-interactive-package need-install-root \
	test test-tools bench clean

all:
	$(CARGO) build --release --workspace
	@# The daemon the master tests run (tests/test_master.py), not installed.
	$(CARGO) build --release -p libmail --example test_service
	$(CARGO) build --release -p libmail --example make_queue_file
	@# mailq and newaliases are sendmail under other names (it looks at
	@# its name); each is installed as a file of its own at its _path.
	ln -f target/release/sendmail target/release/mailq
	ln -f target/release/sendmail target/release/newaliases
	@mkdir -p $(dir $(POSTCONF5))
	$(CARGO) run --release -q -p libmail --example postconf5 > $(POSTCONF5).tmp \
		|| { rm -f $(POSTCONF5).tmp; exit 1; }
	mv -f $(POSTCONF5).tmp $(POSTCONF5)

install: all
	bash ./postfix-install $(INSTALL_ARGS)

package: all
	bash ./postfix-install -package $(INSTALL_ARGS)

# Checked before building, so a forgotten install_root fails at once.
non-interactive-package: need-install-root all
	bash ./postfix-install -non-interactive -package $(INSTALL_ARGS)

need-install-root:
	@test -n "$(filter command line,$(origin install_root))" || \
		{ echo "make $(MAKECMDGOALS): give install_root=/some/dir" >&2; exit 1; }

test: test-tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --release
	$(MAKE) all
	$(PYTHON) -m pytest -q tests/

# What the tests need on a fresh Debian 12 machine, run as root without a
# terminal.  Each tool is installed only when missing: pip first (the
# machine's Python), then Debian's packages (for a system Python that pip
# may not touch).  The braces keep "check || install" from running the
# install after a successful check.
apt_install = { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); }
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1

test-tools:
	@command -v $(PYTHON) >/dev/null || $(call apt_install,python3)
	@$(PYTHON) -c 'import pytest, pexpect' 2>/dev/null \
		|| $(PYTHON) -m pip install -q pytest pexpect \
		|| $(call apt_install,python3-pytest python3-pexpect)
	@command -v useradd >/dev/null || $(call apt_install,passwd)
	@# Debian's Postfix, only as the reference the postconf tests compare
	@# against ("No configuration": it is installed, never started).
	@dpkg -s postfix >/dev/null 2>&1 || { \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		$(call apt_install,postfix); }
	@# swaks, a second real SMTP client for the smtpd tests.
	@command -v swaks >/dev/null || $(call apt_install,swaks)
	@# pflogsumm counts the deliveries and bounces in the delivery tests'
	@# maillog, as an administrator's report would.
	@command -v pflogsumm >/dev/null || $(call apt_install,pflogsumm)
	@# Its pcre: and cdb: tables, for the postmap tests.
	@dpkg -s postfix-pcre >/dev/null 2>&1 || $(call apt_install,postfix-pcre)
	@dpkg -s postfix-cdb >/dev/null 2>&1 || $(call apt_install,postfix-cdb)
	@# A throwaway MariaDB server for the mysql: table tests (started by
	@# the tests themselves on a private port and socket, never as a service).
	@command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || $(call apt_install,mariadb-server)
	@# BIND 9's named: the authoritative name server the DNS tests start
	@# on a loopback port with zones of their own (never as a service).
	@test -x /usr/sbin/named || $(call apt_install,bind9)
	@# aiosmtpd: the Python SMTP peer that records what the smtp client sent.
	@$(PYTHON) -c 'import aiosmtpd' 2>/dev/null \
		|| $(PYTHON) -m pip install -q aiosmtpd \
		|| $(call apt_install,python3-aiosmtpd)
	@# OpenSSL's headers, for the smtp client's TLS (the openssl crate).
	@dpkg -s libssl-dev >/dev/null 2>&1 || $(call apt_install,libssl-dev pkg-config)
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

# Not a test: table build and lookup speed against Debian's postmap, then
# mail throughput, CPU and memory end to end against Debian's Postfix.
bench: all
	$(PYTHON) bench/tables.py
	$(PYTHON) bench/mail.py

clean:
	$(CARGO) clean
	rm -rf .pytest_cache tests/__pycache__

# The README's first command: install into ./demo and show postconf at work.
demo: all
	bash scripts/demo.sh
