"""python-example: a mailgate policy plugin written in Python.

Built with componentize-py against the same WIT interface as the Rust
plugins (`wit/policy.wit`, package `mailgate:policy`); see README.md.

Hook: `data`.  Grants: `config`.

At `data` it reads the message's `Subject:` (RFC 2047 encoded words
decoded, so `=?utf-8?b?...?=` does not hide a word) and

- rejects the message (550 5.7.1) when the subject contains one of the
  configured words (case-insensitive);
- otherwise accepts it and adds a header saying it was checked.

Configuration (the `config` table of its `[[plugin]]` entry, read as JSON
through the `config` capability):

    [[plugin]]
    name   = "python_example"          # the file python_example.wasm
    grants = ["config"]
    config = { words = ["lottery", "casino"], header = "X-Subject-Filter" }

`words` (default: none) is a list of words, or one comma-separated string;
`header` (default `X-Subject-Filter`) is the name of the header added.
`self-test` refuses the plugin at load when the configuration is malformed.

The host keeps instances warm between calls (docs/plugins.md, "Limits and
failures"), so the parsed configuration is cached in a module global: the
first call of an instance reads it, later calls of that instance reuse it;
a fresh instance simply reads it again. Nothing else is kept.
"""

# componentize-py snapshots the interpreter after importing this module
# (at build time) and bundles only the modules imported by then: a codec
# looked up later by name would be missing. `decode_header` needs
# raw-unicode-escape; the others are the charsets most mail declares.
import encodings.ascii  # noqa: F401
import encodings.cp1252  # noqa: F401
import encodings.iso8859_15  # noqa: F401
import encodings.latin_1  # noqa: F401
import encodings.raw_unicode_escape  # noqa: F401
import encodings.utf_8  # noqa: F401
import json
import sys
from email.header import decode_header

from componentize_py_types import Err

import wit_world
from wit_world.exports import metadata
from wit_world.imports import config, types

NAME = "python-example"
VERSION = "0.1.0"
DEFAULT_HEADER = "X-Subject-Filter"


class ConfigError(Exception):
    pass


_cached = None


def settings():
    """(words, header) from the plugin's JSON configuration, parsed once per instance."""
    global _cached
    if _cached is None:
        _cached = parse(config.get())
    return _cached


def parse(text):
    """(words, header) from the JSON text of the `config` capability."""
    try:
        cfg = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config is not JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError("config is not a table")
    unknown = sorted(set(cfg) - {"words", "header"})
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    words = cfg.get("words", [])
    if isinstance(words, str):
        words = words.split(",")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ConfigError("`words` must be a list of strings or a comma-separated string")
    words = [w.strip().casefold() for w in words if w.strip()]
    header = cfg.get("header", DEFAULT_HEADER)
    if (not isinstance(header, str) or not header
            or not all(33 <= ord(c) <= 126 and c != ":" for c in header)):
        raise ConfigError("`header` must be a header field name")
    return words, header


def decoded(value):
    """A header value with its RFC 2047 encoded words decoded (an unknown
    charset read as Latin-1, malformed words left as they are)."""
    try:
        parts = decode_header(value)
    except Exception:
        return value
    out = []
    for text, charset in parts:
        if isinstance(text, bytes):
            try:
                text = text.decode(charset or "ascii", "replace")
            except LookupError:
                text = text.decode("latin-1")
        out.append(text)
    return "".join(out)


def ascii_only(text):
    """Reply text is printable ASCII: a non-ASCII word is shown with `?`."""
    return text.encode("ascii", "replace").decode()


def reply(code, enhanced, text):
    return types.Reply(code=code, enhanced=enhanced, text=text)


class Metadata(wit_world.exports.Metadata):
    def describe(self):
        return metadata.PluginInfo(name=NAME, version=VERSION, hooks=metadata.Hooks.DATA)

    def self_test(self):
        try:
            parse(config.get())
        except ConfigError as e:
            raise Err(str(e))


class OnData(wit_world.exports.OnData):
    def data(self, session, envelope, message):
        words, header = settings()
        subject = " ".join(decoded(v) for v in message.header("Subject")).casefold()
        for word in words:
            if word in subject:
                return types.Outcome(
                    verdict=types.Verdict_Reject(
                        reply(550, "5.7.1", f"{NAME}: subject refused ({ascii_only(word)})")),
                    edits=[])
        py = "%d.%d" % sys.version_info[:2]
        tag = f"checked by {NAME} {VERSION} (Python {py}); {len(words)} word(s)"
        return types.Outcome(verdict=types.Verdict_Accept(),
                             edits=[types.Edit_AddHeader((header, tag))])
