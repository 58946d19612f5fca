"""A private Postfix instance for the interop tests (tests/test_postfix.py).

Everything lives in one temporary directory: `etc/` (main.cf, master.cf,
lookup tables, the TLS certificate; the instance's `config_directory`),
`spool/` (`queue_directory`), `data/` (`data_directory`), `vmail/`
(virtual Maildirs) and `maillog` (Postfix's own log, through postlogd:
there is no syslog in the test machine).  Every command is run as
`postfix -c DIR ...` / `postqueue -c DIR ...` with MAIL_CONFIG=DIR too, so
the system-wide instance (/etc/postfix, /var/spool/postfix) is never read,
started or stopped.

The instance listens on one loopback address and a free port (a master.cf
service named `ADDR:PORT`), does no DNS at all (next hops are IP literals
in `transport_maps`), delivers `virtual_mailbox_domains` to Maildirs, and
retries every second, so a test never waits for Postfix's default backoff.

Postfix must run as root (the master drops privileges to the `postfix`
user the Debian package creates).  When it is not installed, or cannot be
started, `unavailable()` fails the test under CI (the `CI` environment
variable set) and skips it, loudly, elsewhere.
"""

from __future__ import annotations

import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import free_port, peer_unavailable

CMD_TIMEOUT = 60.0  # seconds for one postfix/postmap/postqueue command
STOP_TIMEOUT = 20.0  # seconds for the master to exit after `postfix stop`

# The master.cf shared with bench/peers.sh; @LISTEN@ is the SMTP listener.
MASTER_CF = (Path(__file__).parent / "postfix-master.cf").read_text()


def unavailable(reason: str):
    """Postfix cannot be used here: a failure under CI, a loud skip elsewhere."""
    peer_unavailable("POSTFIX", reason, "the Postfix interop tests must run;"
                     " install the Debian package `postfix` and run as root")


def check_prerequisites():
    """Calls unavailable() when this machine cannot run a private Postfix."""
    missing = [p for p in ("postfix", "postconf", "postmap", "postqueue")
               if not (shutil.which(p) or Path("/usr/sbin", p).exists())]
    if missing:
        unavailable(f"{', '.join(missing)} not found (Debian package `postfix` not installed)")
    if os.geteuid() != 0:
        unavailable("Postfix's master must run as root and these tests run as uid "
                    f"{os.geteuid()}")
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError as e:
        unavailable(f"the `postfix` user or `postdrop` group is missing ({e})")


def _tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class PostfixError(AssertionError):
    pass


class Postfix:
    """One private Postfix instance; not started until `start()`."""

    def __init__(self, ip: str, *, hostname: str, virtual_domain: str | None = None,
                 mailboxes=(), port: int | None = None):
        self.ip = ip
        self.port = port or free_port(ip)
        self.hostname = hostname
        self.virtual_domain = virtual_domain
        self.root = Path(tempfile.mkdtemp(prefix="mailgate-postfix-"))
        # The daemons run as `postfix` and virtual(8) as the mailbox owner:
        # they must be able to walk into the directory.
        self.root.chmod(0o755)
        self.etc = self.root / "etc"
        self.spool = self.root / "spool"
        self.data = self.root / "data"
        self.vmail = self.root / "vmail"
        self.maillog = self.root / "maillog"
        for d in (self.etc, self.spool, self.data, self.vmail):
            d.mkdir(mode=0o755)
        pw = pwd.getpwnam("postfix")
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        os.chown(self.vmail, self.uid, self.gid)
        os.chown(self.data, self.uid, self.gid)  # the master's lock file
        self.running = False
        self.main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": hostname,
            "mydomain": hostname.partition(".")[2] or hostname,
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "relayhost": "",
            # Postfix insists that inet_interfaces name configured interface
            # addresses, and 127.0.0.x (x > 1) is routed to `lo` without being
            # one: the instance "is" 127.0.0.1, while master.cf binds its
            # SMTP service to `ip` and the client binds to `ip` as well.
            # (So no peer of these tests may use 127.0.0.1: Postfix would take
            # it for itself and refuse to loop.)
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "smtp_bind_address": ip,
            "mynetworks_style": "host",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_peername_lookup": "no",
            # Clients are remote MUAs/MTAs: no header rewriting, no added
            # Date/Message-ID (127.0.0.1 would count as "local" otherwise).
            "local_header_rewrite_clients": "",
            "smtp_dns_support_level": "disabled",
            "smtputf8_enable": "yes",
            "biff": "no",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            # Retry at once instead of after minutes (with `postqueue -f`).
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "smtp_connect_timeout": "5s",
            "smtp_tls_security_level": "may",
            "smtp_tls_loglevel": "1",
        }
        if virtual_domain:
            table = self.etc / "vmailbox"
            table.write_text("".join(f"{addr} {virtual_domain}/{addr.split('@')[0]}/\n"
                                     for addr in mailboxes))
            self.main.update({
                "virtual_mailbox_domains": virtual_domain,
                "virtual_mailbox_base": str(self.vmail),
                "virtual_mailbox_maps": f"hash:{table}",
                "virtual_uid_maps": f"static:{self.uid}",
                "virtual_gid_maps": f"static:{self.gid}",
            })

    def enable_server_tls(self, cert, key):
        """STARTTLS in smtpd with this certificate (a PEM pair; smtpd reads it
        as root before dropping privileges)."""
        self.main.update({
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_received_header": "yes",
            "smtpd_tls_loglevel": "1",
        })

    # ---- commands ----------------------------------------------------------
    @property
    def env(self):
        return dict(os.environ, MAIL_CONFIG=str(self.etc), LANG="C")

    def run(self, *cmd, check=True, timeout=CMD_TIMEOUT) -> subprocess.CompletedProcess:
        res = subprocess.run([_tool(cmd[0]), *cmd[1:]], env=self.env, capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise PostfixError(f"`{' '.join(cmd)}` exited {res.returncode}:\n{res.stdout}"
                               f"{res.stderr}\nmaillog:\n{self.log_tail()}")
        return res

    def log_tail(self, n=6000) -> str:
        try:
            return self.maillog.read_text(errors="replace")[-n:]
        except OSError:
            return "<no maillog>"

    def set_transport(self, domain: str, nexthop: str):
        """Mail for `domain` goes to `nexthop` (e.g. `smtp:[127.0.0.5]:2525`)."""
        self.main["transport_maps"] = f"inline:{{{domain}={nexthop}}}"
        if self.running:
            self.run("postconf", "-c", str(self.etc), "-e",
                     f"transport_maps={self.main['transport_maps']}")
            self.run("postfix", "-c", str(self.etc), "reload")

    def write_config(self):
        (self.etc / "main.cf").write_text(
            "".join(f"{k} = {v}\n" for k, v in self.main.items()))
        (self.etc / "master.cf").write_text(MASTER_CF.replace("@LISTEN@", f"{self.ip}:{self.port}"))
        if self.virtual_domain:
            self.run("postmap", "-c", str(self.etc), f"hash:{self.etc / 'vmailbox'}")

    def start(self):
        """Writes the configuration, checks it and starts the master; calls
        unavailable() if Postfix refuses (a broken installation)."""
        self.write_config()
        try:
            self.run("postfix", "-c", str(self.etc), "check")
        except (PostfixError, OSError, subprocess.TimeoutExpired) as e:
            unavailable(f"`postfix -c {self.etc} check` failed: {e}")
        try:
            self.run("postfix", "-c", str(self.etc), "start")
        except (PostfixError, OSError, subprocess.TimeoutExpired) as e:
            self.stop()
            unavailable(f"`postfix -c {self.etc} start` failed: {e}")
        self.running = True
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection((self.ip, self.port), timeout=2) as s:
                    s.settimeout(5)
                    banner = s.recv(512)
                if banner.startswith(b"220"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                unavailable(f"Postfix started but {self.ip}:{self.port} gives no 220 banner;"
                            f" maillog:\n{self.log_tail()}")
            time.sleep(0.2)
        return self

    def master_pid(self) -> int | None:
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _alive(self, pid) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # A zombie is gone for our purposes.
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    def stop(self):
        """`postfix stop`, then `abort`, then SIGKILL of this instance's
        master (by the pid in its own queue directory) if it lingers."""
        pid = self.master_pid()
        for how in ("stop", "abort"):
            if pid is None or not self._alive(pid):
                break
            try:
                self.run("postfix", "-c", str(self.etc), how, check=False, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            deadline = time.monotonic() + STOP_TIMEOUT / 2
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
        if pid is not None and self._alive(pid):
            try:
                # The master is a session leader (its children share its
                # group); never signal a group that is not its own.
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.running = False

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- queue and mailboxes ----------------------------------------------
    def flush(self):
        self.run("postqueue", "-c", str(self.etc), "-f", check=False)

    def queue(self) -> str:
        return self.run("postqueue", "-c", str(self.etc), "-p", check=False).stdout

    def queue_empty(self) -> bool:
        return "Mail queue is empty" in self.queue()

    def maildir(self, address: str) -> list[bytes]:
        """The messages delivered to `address`'s Maildir (new/ and cur/),
        oldest first, as the bytes on disk (LF line ends)."""
        local = address.split("@")[0]
        base = self.vmail / self.virtual_domain / local
        files = [f for sub in ("new", "cur") for f in (base / sub).glob("*") if f.is_file()]
        files.sort(key=lambda f: f.stat().st_mtime_ns)
        return [f.read_bytes() for f in files]
