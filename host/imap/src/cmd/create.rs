//! CREATE (RFC 9051 §6.3.4, with RFC 6154 §3 CREATE-SPECIAL-USE).

use mailgate_store::{SpecialUse, StoreError};

use super::{account, mailbox_name};
use crate::names;
use crate::session::{CmdError, CmdResult, Done, Session};

/// `create = "CREATE" SP mailbox [create-params]`. "If the mailbox name
/// is suffixed with the server's hierarchy separator character, this is
/// a declaration that the client intends to create mailbox names under
/// this name" — the suffix is dropped. "If the server's hierarchy
/// separator character appears elsewhere in the name, the server SHOULD
/// create any superior hierarchical names that are needed."
pub(crate) async fn create(s: &mut Session, raw: &[u8], special_use: &[String]) -> CmdResult {
    let name = mailbox_name(s, raw)?;
    let name = name
        .strip_suffix(names::SEPARATOR)
        .unwrap_or(&name)
        .to_string();
    if name == "INBOX" {
        return Err(CmdError::no("ALREADYEXISTS", "INBOX always exists"));
    }
    names::validate_new(&name).map_err(|e| CmdError::no("CANNOT", e))?;
    let use_attr = match special_use {
        [] => None,
        [one] => Some(
            SpecialUse::from_attribute(one)
                .ok_or_else(|| CmdError::no("USEATTR", format!("Unsupported special use {one}")))?,
        ),
        _ => return Err(CmdError::no("USEATTR", "Only one special use per mailbox")),
    };
    let account = account(s)?.id;
    let store = &s.ctx.store;
    let mut end = 0;
    while let Some(i) = name[end..].find(names::SEPARATOR) {
        let parent = &name[..end + i];
        match store.create_mailbox(account, parent, None).await {
            Ok(_) | Err(StoreError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        end += i + 1;
    }
    store.create_mailbox(account, &name, use_attr).await?;
    Ok(Done::ok("CREATE completed"))
}
