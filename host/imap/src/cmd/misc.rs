//! The small commands: CAPABILITY, NOOP/CHECK, LOGOUT, STARTTLS, ID,
//! ENABLE, NAMESPACE, and the start of IDLE.

use mailgate_imap_proto::response::{write_continue, write_untagged};

use crate::session::{CmdError, CmdResult, Done, Session, Upgrade};

/// RFC 9051 §6.1.1: "The CAPABILITY command requests a listing of
/// capabilities that the server supports."
pub(crate) fn capability(s: &Session, out: &mut Vec<u8>) -> CmdResult {
    let caps = s.capabilities().join(" ");
    write_untagged(out, &format!("CAPABILITY {caps}"));
    Ok(Done::ok("CAPABILITY completed"))
}

/// RFC 9051 §6.1.2: NOOP "can be used as a periodic poll for new messages
/// or message status updates" — the session announces changes after
/// every command, so there is nothing else to do. CHECK (RFC 3501
/// §6.4.1) is the same here: every change is durable already.
pub(crate) fn noop() -> CmdResult {
    Ok(Done::ok("NOOP completed"))
}

/// RFC 9051 §6.1.3: "The server MUST send a BYE untagged response before
/// the (tagged) OK response, and then close the network connection."
pub(crate) fn logout(s: &mut Session, out: &mut Vec<u8>) -> CmdResult {
    write_untagged(out, "BYE Logging out");
    s.close("logout");
    Ok(Done::ok("LOGOUT completed"))
}

/// RFC 9051 §6.2.1: "A [TLS] negotiation begins immediately after the
/// CRLF at the end of the tagged OK response from the server." The loop
/// runs the handshake ([`Upgrade::StartTls`]) and throws away anything
/// the client pipelined after this command (it came in clear). Refused
/// where the listener has no TLS, and once TLS is on.
pub(crate) fn starttls(s: &mut Session) -> CmdResult {
    if s.tls {
        return Err(CmdError::Bad("TLS is already active".into()));
    }
    if s.ctx.tls.starttls().is_none() {
        return Err(CmdError::Bad("STARTTLS is not available".into()));
    }
    s.upgrade = Some(Upgrade::StartTls);
    Ok(Done::ok("Begin TLS negotiation now"))
}

/// RFC 2971 §3.1: "the server MUST return an ID response, which may be
/// NIL"; we name ourselves and only log what the client says.
pub(crate) fn id(
    s: &Session,
    params: Option<mailgate_imap_proto::IdParams>,
    out: &mut Vec<u8>,
) -> CmdResult {
    if let Some(params) = params {
        // Bytes that are not UTF-8 as \xNN (control characters are the
        // log formatter's to escape).
        let text: Vec<String> = params
            .iter()
            .map(|(k, v)| {
                let v = v.as_deref().unwrap_or(b"NIL".as_slice());
                format!("{}={}", mailgate_log::bytes(k), mailgate_log::bytes(v))
            })
            .collect();
        tracing::debug!(client = %s.peer.ip(), id = %text.join(" "), "imap client id");
    }
    write_untagged(out, "ID (\"name\" \"mailgate\")");
    Ok(Done::ok("ID completed"))
}

/// RFC 5161 §3.1: "the server responds with a tagged OK [...] and an
/// untagged ENABLED response listing the capabilities that were
/// enabled"; unknown ones are ignored.
pub(crate) fn enable(s: &mut Session, caps: &[String], out: &mut Vec<u8>) -> CmdResult {
    let mut enabled = Vec::new();
    for cap in caps {
        let newly = match cap.as_str() {
            "IMAP4REV2" => {
                !std::mem::replace(&mut s.rev2, true) | !std::mem::replace(&mut s.utf8, true)
            }
            "UTF8=ACCEPT" => !std::mem::replace(&mut s.utf8, true),
            "CONDSTORE" => !std::mem::replace(&mut s.condstore, true),
            // RFC 7162 §3.2.3: enabling QRESYNC implies CONDSTORE.
            "QRESYNC" => {
                s.condstore = true;
                !std::mem::replace(&mut s.qresync, true)
            }
            _ => false,
        };
        if newly {
            enabled.push(cap.as_str());
        }
    }
    let mut line = String::from("ENABLED");
    for cap in enabled {
        line.push(' ');
        line.push_str(cap);
    }
    write_untagged(out, &line);
    Ok(Done::ok("ENABLE completed"))
}

/// RFC 2342 §5 / RFC 9051 §6.3.10: one personal namespace, no prefix,
/// separator `/`; no other users' or shared namespaces.
pub(crate) fn namespace(_s: &Session, out: &mut Vec<u8>) -> CmdResult {
    write_untagged(out, "NAMESPACE ((\"\" \"/\")) NIL NIL");
    Ok(Done::ok("NAMESPACE completed"))
}

/// RFC 2177 §3: "the server [...] sends a continuation request; the
/// client then waits for untagged responses until it sends DONE."
/// Changes already known are announced first.
pub(crate) async fn idle(s: &mut Session, out: &mut Vec<u8>) -> Result<(), CmdError> {
    s.sync(out, true).await;
    write_continue(out, "idling");
    Ok(())
}

/// RFC 4978 §3: `compress = "COMPRESS" SP algorithm`. "If the server
/// responds with OK, then the next octet after the CRLF of the tagged OK
/// is compressed"; a second COMPRESS gets `NO [COMPRESSIONACTIVE]`.
pub(crate) fn compress(s: &mut Session, mechanism: &str) -> CmdResult {
    if mechanism != "DEFLATE" {
        return Err(CmdError::Bad(format!(
            "Unknown compression algorithm {mechanism}"
        )));
    }
    if s.compressed {
        return Err(CmdError::no(
            "COMPRESSIONACTIVE",
            "Compression is already active",
        ));
    }
    s.compressed = true;
    s.upgrade = Some(Upgrade::Deflate);
    Ok(Done::ok("DEFLATE active"))
}
