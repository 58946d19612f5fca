#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into
fuzz/corpus/<target>/ (run once; the fuzzer's minimised corpus replaces
them). Each target's input starts with its parameter bytes (see the
target's doc in host/fuzz/src); the seeds use the defaults."""
import hashlib
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def save(target, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def cuts(*c):
    return b"".join(struct.pack("<H", x) for x in c)


SMTP = [
    b"EHLO client.example.org\r\nMAIL FROM:<a@example.org> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n",
    b"HELO [127.0.0.1]\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nBDAT 5\r\nhelloBDAT 7 LAST\r\n world\r\nRSET\r\n",
    b"EHLO [IPv6:::1]\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<\"quoted local\"@example.org> SMTPUTF8\r\nRCPT TO:<user@\xe4\xbe\x8b\xe5\xad\x90.example>\r\nVRFY postmaster\r\nNOOP x\r\nHELP\r\nSTARTTLS\r\n",
    b"LHLO lmtp\nMAIL FROM:<@a.example,@b.example:c@d.example> RET=HDRS ENVID=x+2Bid\r\nBDAT 0 LAST\r\n",
    b"x" * 3000 + b"\r\nNOOP\r\n",
]
for s in SMTP:
    save("smtp_command", b"\0\0" + cuts(7, 40, 300) + s)

DATA = [
    b"Subject: hi\r\n\r\nbody\r\n.\r\n",
    b".\r\n",
    b"..leading dot\r\n...\r\n.\r\nQUIT\r\n",
    b"bare\nlf\r\n.\n.\r\n\r\n.\r\n",
    b"cr\ronly\r\n.\r.\r\n.\r\n",
    b"a" * 1200 + b"\r\n.\r\n",
]
for s in DATA:
    save("smtp_data", b"\0" + cuts(3, 11) + s)
    save("smtp_data", b"\x03\x10" + cuts(1, 2) + s)

BDAT = [b"hello world\r\n", b"a\r", b"\nb\r\n", b"\x00\xff binary \r\r\n"]
for s in BDAT:
    save("smtp_bdat", b"\0\0\x02" + cuts(5, 100) + cuts(2, 9) + s)
    save("smtp_bdat", b"\x01\x05\x03" + cuts(1, 1, 0) + cuts(0, 1) + s)

IMAP = [
    b"a1 CAPABILITY\r\na2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\na3 SELECT INBOX\r\n",
    b"a4 APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {11}\r\nhello world\r\n",
    b"a5 APPEND INBOX {3+}\r\nabc {3+}\r\ndef\r\n",
    b"a6 UID FETCH 1:*,3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.100> BODYSTRUCTURE)\r\n",
    b"a7 SEARCH CHARSET UTF-8 OR (FROM {3}\r\nbob SINCE 1-Feb-1994) NOT (DELETED UNKEYWORD $Junk)\r\n",
    b"a8 COMPRESS DEFLATE\r\na9 ID (\"name\" \"x\")\r\nb1 LIST \"\" \"*\" RETURN (SUBSCRIBED)\r\n",
    b"b2 STORE 1,2:4 +FLAGS.SILENT (\\Deleted)\r\nb3 UID EXPUNGE 1:3\r\nb4 IDLE\r\nDONE\r\n",
    b"b5 LOGIN {99999999}\r\nb6 LOGIN {999999+}\r\n" + b"x" * 100 + b"\r\n",
    b"b7 RENAME \"&ZeVnLIqe-\" Archive/2024\r\nb8 STATUS INBOX (MESSAGES UIDNEXT UNSEEN)\r\n",
    b"b9 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\nc1 ENABLE QRESYNC UTF8=ACCEPT\r\n",
    b"c2 SORT (REVERSE DATE) UTF-8 ALL\r\nc3 THREAD REFERENCES UTF-8 SUBJECT {2}\r\nhi\r\n",
    b"c4 " + b"x" * 70000 + b"\r\nc5 NOOP\r\n",
]
for s in IMAP:
    save("imap_framer", b"\0" + cuts(5, 33, 200) + s)
    save("imap_framer", b"\x01\x20\x08" + struct.pack("<H", 40) + cuts(5, 33, 200) + s)
    for line in s.split(b"\r\n"):
        if line:
            save("imap_command", line)
for d in [b"17-Jul-1996 02:44:25 -0700", b"1-Feb-1994 23:59:60 +1400", b"1:*", b"$", b"4294967295:1,2"]:
    save("imap_command", d)

PLAIN = [b"a COMPRESS DEFLATE\r\n", b"a1 NOOP\r\na2 LOGIN {5}\r\nalice bob\r\n", b"x" * 5000]
for s in PLAIN:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    comp = c.compress(s) + c.flush(zlib.Z_SYNC_FLUSH)
    save("imap_compress", b"\x10\x04" + cuts(3, 17) + comp)
    save("imap_compress", b"\xff\x00" + cuts(0, 5) + s)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    save("imap_compress", b"\x00\x00" + cuts(1, 2) + c.compress(s) + c.flush())

for s in ["INBOX", "~peter/mail/&U,BTFw-/&ZeVnLIqe-", "A&-B", "&AGE-", "&2D3-", "Entw&APw-rfe", "&2D3eAA-"]:
    save("mutf7", s.encode())
for s in ["~peter/mail/\u53f0\u5317", "Entw\u00fcrfe \U0001f600", "a&b"]:
    save("mutf7", s.encode())

POP3 = [
    b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nLIST 1\r\nRETR 1\r\nTOP 1 10\r\nUIDL\r\nDELE 1\r\nRSET\r\nNOOP\r\nQUIT\r\n",
    b"CAPA\r\nSTLS\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n*\r\nAPOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
    b"From: a\r\nSubject: x\r\n\r\n.dot line\r\n..\r\n.\r\nlast",
    b"bare\nlf\n\nbody\n.\n",
    b"x" * 600 + b"\r\nSTAT\r\n",
]
for s in POP3:
    save("pop3", b"\0\x02" + cuts(4, 50) + s)

MSGS = [
    b"From: Alice <alice@example.org>\r\nTo: bob@example.org, \"Carol, C\" <carol@example.org>\r\nSubject: =?UTF-8?Q?hi?=\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ntext=\r\n\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n--b2\r\n\r\nplain\r\n--b2\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--b2--\r\n--b1\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Disposition: attachment; filename*=UTF-8''a%20b.bin\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <c@x>\r\nContent-Language: en, de\r\n\r\nAAAA\r\n--b1--\r\nepilogue\r\n",
    b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody\n--d\nContent-Type: text/plain\n\nx\n--d--\n",
    b"To: undisclosed-recipients:;, group: a@b, \"q\\\"x\" <c@d>;, (comment) e@f (Name)\r\nFrom: @a.example,@b.example:user@host\r\nSender:\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=x\r\n\r\n" + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 40,
    b"no header at all\r\n",
    b"",
]
for s in MSGS:
    save("structure", s)

with open(os.path.join(ROOT, "..", "config", "mailgate.example.toml"), "rb") as f:
    save("config", f.read())
save("config", b'hostname = "mx.example.org"\ndata_dir = "/var/lib/mailgate"\ndomains = ["Example.org"]\n\n[listen]\nsmtp = "0.0.0.0:25"\npop3 = "0.0.0.0:110"\n')
save("config", b'hostname = "mx"\ndata_dir = "/d"\ndomains = []\n[listen]\nsubmissions = "[::1]:465"\n[tls]\ncert = "/c"\nkey = "/k"\n[limits]\nmax_message_size = 1024\nidle_timeout = 1\n[inbound]\ntimeout = "3s"\n[relay]\n')
