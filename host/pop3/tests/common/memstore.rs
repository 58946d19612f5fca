//! An in-memory [`Store`] double: enough of it for POP3.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mailgate_store::{
    password, Account, AccountId, Alias, Delivered, DeliveryTarget, Directory, DomainInfo,
    FlagChange, MailStore, MailboxId, MailboxInfo, MessageMeta, MessageStructure, NewMessage,
    SpecialUse, StoreError, StoreEvent, StoreResult, Uid,
};
use tokio::sync::broadcast;

/// The INBOX of one account (the only mailbox POP3 sees).
struct Inbox {
    id: MailboxId,
    uid_validity: u32,
    uid_next: u32,
    messages: BTreeMap<u32, Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    accounts: Vec<Account>,
    inboxes: BTreeMap<AccountId, Inbox>,
}

pub struct MemStore {
    inner: Mutex<Inner>,
    events: broadcast::Sender<StoreEvent>,
    /// Makes `expunge` fail, to test QUIT's error path.
    pub fail_expunge: AtomicBool,
}

fn unsupported<T>() -> StoreResult<T> {
    Err(StoreError::Invalid("not in the test double".into()))
}

impl MemStore {
    pub fn new() -> Arc<MemStore> {
        Arc::new(MemStore {
            inner: Mutex::default(),
            events: broadcast::channel(16).0,
            fail_expunge: AtomicBool::new(false),
        })
    }

    pub fn add_account(&self, address: &str, pass: &str) -> AccountId {
        let mut inner = self.inner.lock().unwrap();
        let id = inner.accounts.len() as i64 + 1;
        inner.accounts.push(Account {
            id,
            address: address.to_string(),
            password_hash: password::hash_password(pass),
            quota_bytes: None,
        });
        inner.inboxes.insert(
            id,
            Inbox {
                id: 100 + id,
                uid_validity: 1_700_000_000 + id as u32,
                uid_next: 1,
                messages: BTreeMap::new(),
            },
        );
        id
    }

    pub fn add_message(&self, account: AccountId, raw: &[u8]) -> Uid {
        let mut inner = self.inner.lock().unwrap();
        let inbox = inner.inboxes.get_mut(&account).unwrap();
        let uid = inbox.uid_next;
        inbox.uid_next += 1;
        inbox.messages.insert(uid, raw.to_vec());
        Uid::new(uid).unwrap()
    }

    pub fn uids(&self, account: AccountId) -> Vec<u32> {
        self.inner.lock().unwrap().inboxes[&account]
            .messages
            .keys()
            .copied()
            .collect()
    }

    pub fn uid_validity(&self, account: AccountId) -> u32 {
        self.inner.lock().unwrap().inboxes[&account].uid_validity
    }

    fn by_mailbox<T>(
        &self,
        mailbox: MailboxId,
        f: impl FnOnce(&mut BTreeMap<u32, Vec<u8>>) -> T,
    ) -> StoreResult<T> {
        let mut inner = self.inner.lock().unwrap();
        match inner.inboxes.values_mut().find(|i| i.id == mailbox) {
            Some(inbox) => Ok(f(&mut inbox.messages)),
            None => Err(StoreError::NotFound(format!("mailbox {mailbox}"))),
        }
    }
}

#[async_trait]
impl Directory for MemStore {
    async fn list_domains(&self) -> StoreResult<Vec<DomainInfo>> {
        unsupported()
    }
    async fn add_domain(&self, _: &str) -> StoreResult<()> {
        unsupported()
    }
    async fn delete_domain(&self, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn set_catch_all(&self, _: &str, _: Option<&str>) -> StoreResult<()> {
        unsupported()
    }
    async fn create_account(&self, _: &str, _: &str) -> StoreResult<AccountId> {
        unsupported()
    }
    async fn set_password_hash(&self, _: &str, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn delete_account(&self, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        Ok(self.inner.lock().unwrap().accounts.clone())
    }
    async fn account(&self, address: &str) -> StoreResult<Option<Account>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .accounts
            .iter()
            .find(|a| a.address == address)
            .cloned())
    }
    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<Account>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .accounts
            .iter()
            .find(|a| a.id == id)
            .cloned())
    }
    async fn set_alias(&self, _: &str, _: &[String]) -> StoreResult<()> {
        unsupported()
    }
    async fn delete_alias(&self, _: &str) -> StoreResult<bool> {
        unsupported()
    }
    async fn list_aliases(&self) -> StoreResult<Vec<Alias>> {
        unsupported()
    }
    async fn alias(&self, _: &str) -> StoreResult<Option<Vec<String>>> {
        unsupported()
    }
}

#[async_trait]
impl MailStore for MemStore {
    async fn list_mailboxes(&self, _: AccountId) -> StoreResult<Vec<MailboxInfo>> {
        unsupported()
    }
    async fn mailbox(&self, account: AccountId, name: &str) -> StoreResult<Option<MailboxInfo>> {
        if !name.eq_ignore_ascii_case("INBOX") {
            return Ok(None);
        }
        let inner = self.inner.lock().unwrap();
        Ok(inner.inboxes.get(&account).map(|inbox| MailboxInfo {
            id: inbox.id,
            account,
            name: "INBOX".into(),
            special_use: None,
            subscribed: true,
            uid_validity: inbox.uid_validity,
            uid_next: inbox.uid_next,
            highest_modseq: 1,
            messages: inbox.messages.len() as u32,
            unseen: inbox.messages.len() as u32,
            size: inbox.messages.values().map(|m| m.len() as u64).sum(),
        }))
    }
    async fn create_mailbox(
        &self,
        _: AccountId,
        _: &str,
        _: Option<SpecialUse>,
    ) -> StoreResult<MailboxId> {
        unsupported()
    }
    async fn deliver(&self, _: NewMessage, _: &[DeliveryTarget]) -> StoreResult<Vec<Delivered>> {
        unsupported()
    }
    async fn list_messages(&self, mailbox: MailboxId) -> StoreResult<Vec<MessageMeta>> {
        self.by_mailbox(mailbox, |msgs| {
            // Reversed on purpose: the session must sort by UID itself.
            msgs.iter()
                .rev()
                .map(|(uid, raw)| MessageMeta {
                    uid: Uid::new(*uid).unwrap(),
                    flags: Vec::new(),
                    internal_date: 0,
                    size: raw.len() as u64,
                    modseq: 1,
                    blob: *uid as i64,
                })
                .collect()
        })
    }
    async fn message_raw(&self, mailbox: MailboxId, uid: Uid) -> StoreResult<Option<Vec<u8>>> {
        self.by_mailbox(mailbox, |msgs| msgs.get(&uid.get()).cloned())
    }
    async fn message_structure(
        &self,
        _: MailboxId,
        _: Uid,
    ) -> StoreResult<Option<MessageStructure>> {
        unsupported()
    }
    async fn store_flags(
        &self,
        _: MailboxId,
        _: &[Uid],
        _: FlagChange,
    ) -> StoreResult<Vec<MessageMeta>> {
        unsupported()
    }
    async fn expunge(&self, mailbox: MailboxId, uids: &[Uid]) -> StoreResult<Vec<Uid>> {
        if self.fail_expunge.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.by_mailbox(mailbox, |msgs| {
            uids.iter()
                .copied()
                .filter(|u| msgs.remove(&u.get()).is_some())
                .collect()
        })
    }
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
    async fn check(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
}
