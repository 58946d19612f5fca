"""`mailgate sieve check FILE` with the real binary: a valid script (exit 0,
the extensions it requires), errors with file, line and column (exit 1),
standard input, `--editheader`, a script over the 1 MiB limit, text that is
not UTF-8, and a name with control characters printed escaped. No
configuration file is needed."""

import subprocess


def check(mailgate_bin, tmp_path, *args, stdin=None):
    return subprocess.run(
        [str(mailgate_bin), "sieve", "check", *args],
        input=stdin, capture_output=True, cwd=tmp_path, timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


VALID = """require ["fileinto", "vacation", "variables"];
# file the newsletter, answer the rest
if header :matches "List-Id" "*<*.example.org>" {
    fileinto "Lists/${2}";
    stop;
}
vacation :days 7 :subject "Away" text:
I am away until Monday.
.
;
"""


def test_valid_script(mailgate_bin, tmp_path):
    path = write(tmp_path, "good.sieve", VALID)
    r = check(mailgate_bin, tmp_path, str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"{path}: ok (requires fileinto, vacation, variables)\n"
    r = check(mailgate_bin, tmp_path, str(write(tmp_path, "empty.sieve", "")))
    assert r.returncode == 0 and r.stdout.decode().endswith(": ok\n")


def test_errors_name_line_and_column(mailgate_bin, tmp_path):
    cases = [
        ("keep;\nif true {\n  filein \"x\";\n}\n", "3:3: unknown command 'filein'"),
        ("fileinto \"x\";", "1:1: fileinto needs require \"fileinto\""),
        ("require \"frobnicate\";", "1:9: unknown extension 'frobnicate'"),
        ("if header :is \"a\" \"b\" {\n keep;\n", "3:1: expected a command or '}'"),
        ("require \"regex\";\nif header :regex \"s\" \"(\" {}", "2:22: invalid regular expression"),
    ]
    for text, want in cases:
        path = write(tmp_path, "bad.sieve", text)
        r = check(mailgate_bin, tmp_path, str(path))
        assert r.returncode == 1, text
        assert r.stdout == b""
        assert r.stderr.decode().startswith(f"{path}:{want}"), (text, r.stderr)


def test_stdin_and_editheader(mailgate_bin, tmp_path):
    r = check(mailgate_bin, tmp_path, "-", stdin=b"keep;")
    assert r.returncode == 0 and r.stdout == b"-: ok\n"
    script = b'require "editheader"; addheader "X-Filtered" "yes";'
    r = check(mailgate_bin, tmp_path, "-", stdin=script)
    assert r.returncode == 1 and b"not enabled" in r.stderr
    r = check(mailgate_bin, tmp_path, "--editheader", "-", stdin=script)
    assert r.returncode == 0, r.stderr


def test_limits_and_bad_input(mailgate_bin, tmp_path):
    big = write(tmp_path, "big.sieve", "#" + "x" * (1 << 20) + "\nkeep;\n")
    r = check(mailgate_bin, tmp_path, str(big))
    assert r.returncode == 1 and b"more than the limit of 1048576" in r.stderr
    deep = write(tmp_path, "deep.sieve", "if true {" * 33 + "}" * 33)
    r = check(mailgate_bin, tmp_path, str(deep))
    assert r.returncode == 1 and b"nested deeper than 32" in r.stderr
    latin1 = write(tmp_path, "latin1.sieve", b'keep;\nfileinto "Entw\xfcrfe";')
    r = check(mailgate_bin, tmp_path, str(latin1))
    assert r.returncode == 1 and b":2:15: the script is not valid UTF-8" in r.stderr
    r = check(mailgate_bin, tmp_path, str(tmp_path / "missing.sieve"))
    assert r.returncode == 1 and b"missing.sieve" in r.stderr
    odd = write(tmp_path, "a\x1bb.sieve", "frob;")
    r = check(mailgate_bin, tmp_path, str(odd))
    assert r.returncode == 1 and b"\x1b" not in r.stderr and b"a\\u{1b}b.sieve" in r.stderr
