"""A private Dovecot instance for the migration tests (tests/test_migration.py).

The same approach as bench/peers.sh: the Debian packages dovecot-imapd and
dovecot-pop3d, a configuration file of our own in a temporary directory
(`dovecot -c DIR/dovecot.conf -F`, never /etc/dovecot), IMAP and POP3 on a
loopback address and free ports, plaintext logins allowed, one passwd-file
user whose Maildir is `DIR/vmail/<user>` (Dovecot's default Maildir++
layout: INBOX in the directory, folders in `.Name`).

Dovecot's master runs as root and drops privileges; the mail is owned by a
non-root user (Dovecot refuses root), here `nobody`, so the tests create no
system user.  When Dovecot is not installed or the tests do not run as root,
`unavailable()` fails the test under CI (the `CI` environment variable set)
and skips it, loudly, elsewhere.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import free_port, peer_unavailable

START_TIMEOUT = 20.0  # seconds for the banners to appear
STOP_TIMEOUT = 15.0  # seconds for the master to exit after SIGTERM
MAIL_USER = "nobody"  # owns the mail; Dovecot refuses root

# The special-use folders Dovecot creates and subscribes, named as mailgate
# names its own (so the two folder lists can be compared as they are).
SPECIAL = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk",
           "Archive": "\\Archive"}


def unavailable(reason: str):
    peer_unavailable("DOVECOT", reason, "the migration tests must run; install the Debian"
                     " packages dovecot-imapd and dovecot-pop3d and run as root")


def check_prerequisites():
    dovecot = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)
    if not dovecot:
        unavailable("`dovecot` not found (Debian packages dovecot-imapd, dovecot-pop3d)")
    if not Path("/usr/lib/dovecot/pop3").exists():
        unavailable("Dovecot's POP3 server is missing (Debian package dovecot-pop3d)")
    if os.geteuid() != 0:
        unavailable(f"Dovecot's master must run as root and these tests run as uid {os.geteuid()}")
    for u in ("dovecot", "dovenull", MAIL_USER):
        try:
            pwd.getpwnam(u)
        except KeyError:
            unavailable(f"user {u} missing (broken Dovecot installation)")
    return dovecot


class Dovecot:
    """One private Dovecot with one user; `start()` it, `stop()` it."""

    def __init__(self, user: str, password: str, ip: str = "127.0.0.1", tls: bool = False):
        self.binary = check_prerequisites()
        self.ip = ip
        self.user = user
        self.password = password
        self.imap_port = free_port(ip)
        self.imaps_port = free_port(ip) if tls else 0
        self.pop3_port = free_port(ip)
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        self.root.chmod(0o755)
        pw = pwd.getpwnam(MAIL_USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.vmail = self.root / "vmail"
        self.vmail.mkdir(mode=0o755)
        os.chown(self.vmail, self.uid, self.gid)
        self.maildir = self.vmail / user.split("@")[0]
        self.conf_dir = self.root / "dovecot"
        (self.conf_dir / "run").mkdir(parents=True)
        (self.conf_dir / "state").mkdir()
        self.log = self.conf_dir / "dovecot.log"
        users = self.conf_dir / "users"
        users.write_text(f"{user}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{self.maildir}::\n")
        users.chmod(0o644)
        specials = "".join(
            f"  mailbox {name} {{\n    auto = subscribe\n    special_use = {use}\n  }}\n"
            for name, use in SPECIAL.items())
        # With `tls`: a self-signed certificate for the address (IMAPS on
        # imaps_port, STARTTLS on imap_port); `self.cert` is its PEM.
        ssl = "ssl = no"
        if tls:
            self.cert = self.conf_dir / "cert.pem"
            key = self.conf_dir / "key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                 str(self.cert), "-days", "2", "-subj", f"/CN={ip}",
                 "-addext", f"subjectAltName=IP:{ip}",
                 # An end-entity certificate (webpki refuses a CA as one).
                 "-addext", "basicConstraints=critical,CA:FALSE"],
                check=True, capture_output=True, timeout=60)
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{key}"
        self.conf = self.conf_dir / "dovecot.conf"
        self.conf.write_text(f"""instance_name = mailgate-test-{os.getpid()}-{self.imap_port}
base_dir = {self.conf_dir}/run
state_dir = {self.conf_dir}/state
log_path = {self.log}
protocols = imap pop3
listen = {ip}
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = {self.uid}
last_valid_uid = {self.uid}
first_valid_gid = {self.gid}
last_valid_gid = {self.gid}
mail_location = maildir:{self.vmail}/%n
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
namespace inbox {{
  inbox = yes
  separator = /
{specials}}}
service imap-login {{
  inet_listener imap {{
    address = {ip}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {ip}
    port = {self.imaps_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {ip}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Dovecot":
        out = open(self.conf_dir / "dovecot.stdout", "ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf), "-F"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.close()
        for port, prefix in ((self.imap_port, b"* OK"), (self.pop3_port, b"+OK")):
            self._wait_banner(port, prefix)
        return self

    def _wait_banner(self, port: int, prefix: bytes):
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dovecot exited {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.ip, port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(200).startswith(prefix):
                        return
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise AssertionError(f"dovecot did not answer on port {port}: {last}; {self.log_tail()}")

    def log_tail(self, n=4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "<no log>"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
