"""TLS to the database (`[store] tls`, `tls_ca_file`; docs/configuration.md).

A private PostgreSQL server (tests/pg_server.py) runs with `ssl = on` and a
certificate for 127.0.0.1 signed by a CA this test makes, and accepts TCP
connections over TLS only (`hostssl`). Against it:
- `tls = "verify-full"` with that CA: the server starts, mail goes in by SMTP
  and out by POP3, and every connection mailgate holds is encrypted
  (`pg_stat_ssl`);
- `verify-full` with another CA, or with a certificate for another name:
  refused with an error that says TLS and why;
- `tls = "require"`: encrypted without a CA;
- `tls = "disable"`: the server turns the plain connection away.
Contradictory settings are refused by `config check` before anything
connects.
"""

from __future__ import annotations

import datetime
import ipaddress
import subprocess

import pytest

import pg_server
from harness import CLI_TIMEOUT, USERS, Server, make_message
from test_store_backend import config_with_store, run, without_store

ALICE = "alice@example.test"


def make_ca(directory, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}-ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def make_server_cert(directory, ca, names, name="server"):
    """A certificate for `names` (IP addresses or DNS names) signed by `ca`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key, ca_cert, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    alt = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory):
    """A PostgreSQL server with TLS only, its CA, and another CA."""
    if not pg_server.available():
        pytest.skip("PostgreSQL is not installed")
    d = tmp_path_factory.mktemp("pgtls")
    ca = make_ca(d, "right")
    other = make_ca(d, "other")
    cert, key = make_server_cert(d, ca, ["127.0.0.1"])
    pg = pg_server.PgServer(ssl=(cert, key), ssl_only=True)
    try:
        yield pg, ca[2], other[2], ca, d
    finally:
        pg.stop()


def store_lines(url, tls, ca_file=None):
    s = f'backend = "postgres"\nexperimental = true\nurl = "{url}"\ntls = "{tls}"\n'
    if ca_file:
        s += f'tls_ca_file = "{ca_file}"\n'
    return s


def server_on(mailgate_bin, tmp_path, store):
    srv = Server(binary=mailgate_bin, workdir=tmp_path,
                 listen={"smtp": "127.0.0.1:0", "pop3": "127.0.0.1:0"})
    srv.config.write_text(without_store(srv.config.read_text()) + "\n[store]\n" + store,
                          encoding="utf-8")
    return srv


def encrypted_connections(pg, db) -> tuple[int, int]:
    """(mailgate's connections, those of them over TLS) as PostgreSQL sees them."""
    out = pg.sql("SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a "
                 "JOIN pg_stat_ssl s USING (pid) "
                 f"WHERE a.application_name LIKE 'mailgate%' AND a.datname = '{db}'")
    total, tls = out.strip().split("|")
    return int(total), int(tls)


def test_verify_full_with_the_right_ca(mailgate_bin, tmp_path, tls_pg):
    pg, ca, _, _, _ = tls_pg
    db = pg.create_database()
    srv = server_on(mailgate_bin, tmp_path / "srv", store_lines(pg.url(db), "verify-full", ca))
    srv.add_user(ALICE, USERS[ALICE])
    assert srv.cli("store", "check", check=True).stdout_text.startswith("store ok: postgres://")
    srv.start()
    try:
        srv.send("sender@remote.test", [ALICE], make_message(subject="over tls"))
        msgs = srv.messages(ALICE)
        assert len(msgs) == 1 and b"Subject: over tls" in msgs[0]
        # Every connection of the node (the pool's and the change
        # listener's) is encrypted.
        total, tls = encrypted_connections(pg, db)
        assert total >= 2 and tls == total, (total, tls)
    finally:
        srv.stop_clean()


def test_verify_full_with_another_ca_is_refused_clearly(mailgate_bin, tmp_path, tls_pg):
    pg, _, other_ca, _, _ = tls_pg
    db = pg.create_database()
    srv = server_on(mailgate_bin, tmp_path / "srv",
                    store_lines(pg.url(db), "verify-full", other_ca))
    res = srv.cli("store", "check")
    assert res.returncode == 1, res.stdout_text
    err = res.stderr_text
    assert "TLS" in err and "verify-full" in err, err
    assert "UnknownIssuer" in err or "certificate" in err, err
    # `serve` stops at start with the same reason, before it is ready.
    res = subprocess.run([str(mailgate_bin), "serve", "--config", str(srv.config)],
                         capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert res.returncode != 0 and "mailgate: ready" not in res.stdout, res.stdout
    assert "TLS" in res.stderr, res.stderr


def test_verify_full_checks_the_name(mailgate_bin, tmp_path, tls_pg):
    """The right CA but a certificate for another host: refused."""
    _, _, _, ca, d = tls_pg
    cert, key = make_server_cert(d, ca, ["db.example.test"], name="misnamed")
    pg = pg_server.PgServer(ssl=(cert, key), ssl_only=True)
    try:
        db = pg.create_database()
        srv = server_on(mailgate_bin, tmp_path / "srv",
                        store_lines(pg.url(db), "verify-full", ca[2]))
        res = srv.cli("store", "check")
        assert res.returncode == 1, res.stdout_text
        err = res.stderr_text
        assert "TLS" in err and ("NotValidForName" in err or "not valid for name" in err), err
        # `require` does not check the name (nor the CA).
        srv.config.write_text(without_store(srv.config.read_text()) + "\n[store]\n"
                              + store_lines(pg.url(db), "require"), encoding="utf-8")
        assert srv.cli("store", "check", check=True).stdout_text.startswith("store ok")
    finally:
        pg.stop()


def test_require_encrypts_without_a_ca(mailgate_bin, tmp_path, tls_pg):
    pg, _, _, _, _ = tls_pg
    db = pg.create_database()
    srv = server_on(mailgate_bin, tmp_path / "srv", store_lines(pg.url(db), "require"))
    srv.add_user(ALICE, USERS[ALICE])
    srv.start()
    try:
        srv.send("sender@remote.test", [ALICE], make_message(subject="required"))
        assert len(srv.messages(ALICE)) == 1
        total, tls = encrypted_connections(pg, db)
        assert total >= 2 and tls == total, (total, tls)
    finally:
        srv.stop_clean()


def test_disable_is_turned_away_by_a_tls_only_server(mailgate_bin, tmp_path, tls_pg):
    pg, _, _, _, _ = tls_pg
    db = pg.create_database()
    srv = server_on(mailgate_bin, tmp_path / "srv", store_lines(pg.url(db), "disable"))
    res = srv.cli("store", "check")
    assert res.returncode == 1, res.stdout_text
    assert "no encryption" in res.stderr_text or "pg_hba" in res.stderr_text \
        or "SQLSTATE 28000" in res.stderr_text, res.stderr_text


def test_migrate_over_tls(mailgate_bin, tmp_path, tls_pg):
    """`store migrate --tls verify-full --tls-ca-file` copies over TLS."""
    pg, ca, other_ca, _, _ = tls_pg
    db = pg.create_database()
    srv = Server(binary=mailgate_bin, workdir=tmp_path / "srv")
    srv.config.write_text(without_store(srv.config.read_text()), encoding="utf-8")
    srv.add_user(ALICE, USERS[ALICE])
    res = srv.cli("store", "migrate", "--to", pg.url(db), "--tls", "verify-full",
                  "--tls-ca-file", str(other_ca))
    assert res.returncode == 1 and "TLS" in res.stderr_text, res.stderr_text
    res = srv.cli("store", "migrate", "--to", pg.url(db), "--tls", "verify-full",
                  "--tls-ca-file", str(ca), check=True)
    assert "store check ok" in res.stdout_text, res.stdout_text
    assert ALICE in pg.sql("SELECT address FROM accounts", db=db)


@pytest.mark.parametrize("store,why", [
    ('backend = "postgres"\nexperimental = true\n'
     'url = "postgres://m@127.0.0.1:1/m?sslmode=disable"\ntls = "require"\n',
     "sslmode=disable"),
    ('backend = "postgres"\nexperimental = true\n'
     'url = "postgres://m@127.0.0.1:1/m?sslmode=require"\n',
     "sslmode=require"),
    ('backend = "postgres"\nexperimental = true\nurl = "postgres://m@127.0.0.1:1/m"\n'
     'tls = "require"\ntls_ca_file = "/etc/ssl/ca.pem"\n',
     "tls_ca_file is only used with"),
    ('backend = "postgres"\nexperimental = true\nurl = "host=/run/postgresql dbname=m"\n'
     'tls = "verify-full"\n',
     "Unix socket"),
    ('backend = "postgres"\nexperimental = true\nurl = "postgres://m@127.0.0.1:1/m"\n'
     'tls = "verify-full"\ntls_ca_file = "/nonexistent/ca.pem"\n',
     "/nonexistent/ca.pem"),
    ('backend = "postgres"\nexperimental = true\nurl = "postgres://m@127.0.0.1:1/m"\n'
     'tls = "prefer"\n',
     "unknown variant"),
    ('tls = "require"\n', 'for backend = "postgres"'),
])
def test_contradictions_are_refused_at_start(mailgate_bin, tmp_path, store, why):
    path = config_with_store(tmp_path, store)
    res = run(mailgate_bin, "config", "check", str(path))
    assert res.returncode == 1, res.stdout
    assert why in res.stderr, res.stderr
    res = run(mailgate_bin, "serve", "--config", str(path))
    assert res.returncode != 0 and why in res.stderr, res.stderr
