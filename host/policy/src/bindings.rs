//! The generated host bindings of `wit/` and their conversion to and from
//! the host types of [`crate::types`]. Nothing generated leaves this module
//! except through `From` conversions and [`HostState`]'s trait impls.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::caps;
use crate::message::MessageView;
use crate::types as host;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "mailgate:policy/plugin",
    imports: {
        // The only import that waits: it must not block a tokio worker.
        "mailgate:policy/dns.lookup": async,
        "mailgate:policy/http.send": async,
        "mailgate:policy/http.send-message": async,
        // The key-value store is the mail store: a write waits for its
        // commit.
        "mailgate:policy/kv.get": async,
        "mailgate:policy/kv.set": async,
        "mailgate:policy/kv.delete": async,
        "mailgate:policy/kv.increment": async,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "mailgate:policy/message.message": MessageHandle,
    },
});

pub(crate) use exports::mailgate::policy::{
    metadata, on_auth, on_connect, on_data, on_helo, on_mail_from, on_mailbox_event, on_rcpt_to,
    on_route,
};
use mailgate::policy::{clock, config, dns, http, kv, log, message, types};

/// The world of the system Sieve plugin (`sieve-filter`, WIT 0.1.4): its
/// imports are the `plugin` world's `types` and `message`, served by the
/// same linker; only its `on-deliver` export is new.
pub(crate) mod sieve_world {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "mailgate:policy/sieve-filter",
        exports: { default: async },
        with: {
            "mailgate:policy/message": crate::bindings::mailgate::policy::message,
        },
    });
}
pub(crate) use sieve_world::exports::mailgate::policy::on_deliver;

/// What the `message` resource points at: one plugin's view.
pub struct MessageHandle(pub(crate) Arc<MessageView>);

/// What one plugin's store holds for one call.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: CallLimiter,
    pub(crate) env: Arc<PluginEnv>,
    /// When the current call's wall time runs out (bounds `http` requests).
    pub(crate) deadline: Instant,
    /// DNS look-ups made in the current call.
    pub(crate) dns_lookups: u32,
}

/// What a plugin's capabilities reach, shared by all its calls.
pub(crate) struct PluginEnv {
    /// The plugin's file stem (the namespace of its keys, its log tag).
    pub(crate) name: String,
    /// Its configuration as JSON.
    pub(crate) config_json: String,
    pub(crate) kv: Arc<dyn caps::KvStore>,
    pub(crate) resolver: Arc<dyn caps::Resolver>,
    /// The runtime's HTTP client (capability `http`).
    pub(crate) http: Arc<crate::http::HttpClient>,
    /// The plugin's `http_allow` list.
    pub(crate) http_allow: Vec<crate::http::AllowRule>,
    /// Bounds the plugin's requests under way at once.
    pub(crate) http_slots: Arc<tokio::sync::Semaphore>,
    /// The plugin's counters (HTTP requests).
    pub(crate) stats: Arc<crate::stats::PluginStats>,
    pub(crate) started: Instant,
    /// `mailgate plugin run`: log lines are also kept here, (level, text).
    pub(crate) captured: std::sync::Mutex<Option<Vec<(&'static str, String)>>>,
}

/// A memory/table limiter that remembers whether it refused, so a trap
/// after a refused `memory.grow` is reported as a memory-limit hit.
pub(crate) struct CallLimiter {
    pub(crate) inner: StoreLimits,
    pub(crate) memory_bytes: usize,
    pub(crate) hit: bool,
    /// The largest linear memory this store's instance has grown to.
    pub(crate) grown_to: usize,
    /// Its memory when it was made (the component's initial memory).
    pub(crate) initial: usize,
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok =
            desired <= self.memory_bytes && self.inner.memory_growing(current, desired, maximum)?;
        self.hit |= !ok;
        if ok {
            if current == 0 && self.initial == 0 {
                self.initial = desired;
            }
            self.grown_to = self.grown_to.max(desired);
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.table_growing(current, desired, maximum)?;
        self.hit |= !ok;
        Ok(ok)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl message::Host for HostState {}

impl message::HostMessage for HostState {
    fn size(&mut self, m: Resource<MessageHandle>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&m)?.0.size())
    }
    fn header(
        &mut self,
        m: Resource<MessageHandle>,
        name: String,
    ) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&m)?.0.header(&name))
    }
    fn header_names(&mut self, m: Resource<MessageHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&m)?.0.header_names())
    }
    fn raw(
        &mut self,
        m: Resource<MessageHandle>,
        start: u64,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&m)?.0.raw_range(start, len))
    }
    fn text_parts(
        &mut self,
        m: Resource<MessageHandle>,
        max_bytes: u32,
    ) -> wasmtime::Result<Vec<message::TextPart>> {
        Ok(self
            .table
            .get(&m)?
            .0
            .text_parts(max_bytes)
            .into_iter()
            .map(|(content_type, text)| message::TextPart { content_type, text })
            .collect())
    }
    fn auth_results(
        &mut self,
        m: Resource<MessageHandle>,
    ) -> wasmtime::Result<Option<message::AuthResults>> {
        Ok(self.table.get(&m)?.0.auth_results().map(Into::into))
    }
    fn tls(&mut self, m: Resource<MessageHandle>) -> wasmtime::Result<Option<message::TlsInfo>> {
        Ok(self.table.get(&m)?.0.tls().map(|t| message::TlsInfo {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
        }))
    }
    fn drop(&mut self, m: Resource<MessageHandle>) -> wasmtime::Result<()> {
        // The host lends the message as a borrow only; an owned handle can
        // only come from the host itself.
        self.table.delete(m)?;
        Ok(())
    }
}

/// Longest log line kept.
const MAX_LOG_LINE: usize = 1024;

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, text: String) -> wasmtime::Result<()> {
        let text: String = text
            .chars()
            .take(MAX_LOG_LINE)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        let plugin = self.env.name.as_str();
        if let Some(lines) = self
            .env
            .captured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let name = match level {
                log::Level::Debug => "debug",
                log::Level::Info => "info",
                log::Level::Warn => "warn",
                log::Level::Error => "error",
            };
            lines.push((name, text.clone()));
        }
        match level {
            log::Level::Debug => tracing::debug!(plugin, "{text}"),
            log::Level::Info => tracing::info!(plugin, "{text}"),
            log::Level::Warn => tracing::warn!(plugin, "{text}"),
            log::Level::Error => tracing::error!(plugin, "{text}"),
        }
        Ok(())
    }
}

impl clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()))
    }
    fn monotonic_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.env.started.elapsed().as_millis() as u64)
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> wasmtime::Result<String> {
        Ok(self.env.config_json.clone())
    }
}

impl dns::Host for HostState {
    async fn lookup(
        &mut self,
        name: String,
        kind: dns::RecordType,
    ) -> Result<Vec<String>, dns::DnsError> {
        self.dns_lookups += 1;
        if self.dns_lookups > crate::dns::MAX_LOOKUPS_PER_CALL {
            return Err(dns::DnsError::Temporary(format!(
                "more than {} look-ups in one call",
                crate::dns::MAX_LOOKUPS_PER_CALL
            )));
        }
        let resolver = self.env.resolver.clone();
        resolver
            .lookup(&name, kind.into())
            .await
            .map_err(dns::DnsError::from)
    }
}

impl HostState {
    async fn http_send(
        &mut self,
        request: http::Request,
        body: crate::http::RequestBody,
    ) -> Result<http::Response, http::HttpError> {
        let env = self.env.clone();
        // Fails at once when the plugin has its maximum under way.
        let Ok(_slot) = env.http_slots.clone().try_acquire_owned() else {
            env.stats.record_http(false);
            return Err(http::HttpError::Busy);
        };
        let request = crate::http::Request {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body,
            timeout_ms: request.timeout_ms,
        };
        let result = env
            .http
            .send(&env.name, &env.http_allow, request, self.deadline)
            .await;
        env.stats.record_http(result.is_ok());
        result
            .map(|r| http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(Into::into)
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        mut request: http::Request,
    ) -> Result<http::Response, http::HttpError> {
        let body = crate::http::RequestBody::Bytes(std::mem::take(&mut request.body));
        self.http_send(request, body).await
    }

    async fn send_message(
        &mut self,
        request: http::Request,
        message: Resource<MessageHandle>,
    ) -> Result<http::Response, http::HttpError> {
        let view = match self.table.get(&message) {
            Ok(m) => m.0.clone(),
            Err(e) => return Err(http::HttpError::InvalidRequest(e.to_string())),
        };
        self.http_send(request, crate::http::RequestBody::Message(view))
            .await
    }
}

impl From<crate::http::HttpError> for http::HttpError {
    fn from(e: crate::http::HttpError) -> Self {
        use crate::http::HttpError as E;
        match e {
            E::NotAllowed(m) => http::HttpError::NotAllowed(m),
            E::InvalidRequest(m) => http::HttpError::InvalidRequest(m),
            E::Timeout => http::HttpError::Timeout,
            E::Connect(m) => http::HttpError::Connect(m),
            E::Busy => http::HttpError::Busy,
            E::TooLarge => http::HttpError::TooLarge,
            E::Protocol(m) => http::HttpError::Protocol(m),
        }
    }
}

impl From<&host::MailboxEvent> for on_mailbox_event::Event {
    fn from(e: &host::MailboxEvent) -> Self {
        on_mailbox_event::Event {
            account: e.account.clone(),
            direction: match e.direction {
                host::Direction::Spam => on_mailbox_event::Direction::Spam,
                host::Direction::Ham => on_mailbox_event::Direction::Ham,
            },
            operation: e.operation.clone(),
            source: e.source.clone(),
            target: e.target.clone(),
        }
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let env = self.env.clone();
        env.kv.get(&env.name, &key).await
    }
    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<(), kv::KvError> {
        let env = self.env.clone();
        env.kv
            .set(&env.name, &key, value, ttl)
            .await
            .map_err(kv::KvError::from)
    }
    async fn delete(&mut self, key: String) {
        let env = self.env.clone();
        env.kv.delete(&env.name, &key).await
    }
    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl: Option<u64>,
    ) -> Result<i64, kv::KvError> {
        let env = self.env.clone();
        env.kv
            .increment(&env.name, &key, delta, ttl)
            .await
            .map_err(kv::KvError::from)
    }
}

// ---- conversions ----

impl From<dns::RecordType> for caps::RecordType {
    fn from(t: dns::RecordType) -> Self {
        match t {
            dns::RecordType::A => caps::RecordType::A,
            dns::RecordType::Aaaa => caps::RecordType::Aaaa,
            dns::RecordType::Mx => caps::RecordType::Mx,
            dns::RecordType::Txt => caps::RecordType::Txt,
            dns::RecordType::Ptr => caps::RecordType::Ptr,
        }
    }
}

impl From<caps::DnsError> for dns::DnsError {
    fn from(e: caps::DnsError) -> Self {
        match e {
            caps::DnsError::NotFound => dns::DnsError::NotFound,
            caps::DnsError::Temporary(m) => dns::DnsError::Temporary(m),
            caps::DnsError::InvalidName => dns::DnsError::InvalidName,
        }
    }
}

impl From<caps::KvError> for kv::KvError {
    fn from(e: caps::KvError) -> Self {
        match e {
            caps::KvError::TooLarge => kv::KvError::TooLarge,
            caps::KvError::Unavailable(m) => kv::KvError::Unavailable(m),
        }
    }
}

impl From<&host::SessionInfo> for types::Session {
    fn from(s: &host::SessionInfo) -> Self {
        types::Session {
            client_ip: s.client_ip.to_string(),
            client_port: s.client_port,
            reverse_name: s.reverse_name.clone(),
            tls: s.tls,
            helo: s.helo.clone(),
            auth_user: s.auth_user.clone(),
            listener: s.listener.clone(),
            session_id: s.session_id.clone(),
        }
    }
}

impl From<host::AuthResult> for message::AuthResult {
    fn from(r: host::AuthResult) -> Self {
        match r {
            host::AuthResult::None => message::AuthResult::None,
            host::AuthResult::Pass => message::AuthResult::Pass,
            host::AuthResult::Fail => message::AuthResult::Fail,
            host::AuthResult::SoftFail => message::AuthResult::Softfail,
            host::AuthResult::Neutral => message::AuthResult::Neutral,
            host::AuthResult::TempError => message::AuthResult::Temperror,
            host::AuthResult::PermError => message::AuthResult::Permerror,
        }
    }
}

impl From<host::DmarcPolicy> for message::DmarcPolicy {
    fn from(p: host::DmarcPolicy) -> Self {
        match p {
            host::DmarcPolicy::Unspecified => message::DmarcPolicy::Unspecified,
            host::DmarcPolicy::None => message::DmarcPolicy::None,
            host::DmarcPolicy::Quarantine => message::DmarcPolicy::Quarantine,
            host::DmarcPolicy::Reject => message::DmarcPolicy::Reject,
        }
    }
}

impl From<&host::AuthResults> for message::AuthResults {
    fn from(a: &host::AuthResults) -> Self {
        message::AuthResults {
            spf: message::SpfCheck {
                result: a.spf.result.into(),
                domain: a.spf.domain.clone(),
            },
            dkim: a
                .dkim
                .iter()
                .map(|d| message::DkimCheck {
                    result: d.result.into(),
                    domain: d.domain.clone(),
                    selector: d.selector.clone(),
                })
                .collect(),
            dmarc: message::DmarcCheck {
                result: a.dmarc.result.into(),
                policy: a.dmarc.policy.into(),
                domain: a.dmarc.domain.clone(),
            },
            arc: a.arc.into(),
        }
    }
}

impl From<&host::Param> for types::Param {
    fn from(p: &host::Param) -> Self {
        types::Param {
            name: p.name.clone(),
            value: p.value.clone(),
        }
    }
}

impl From<&host::Envelope> for types::Envelope {
    fn from(e: &host::Envelope) -> Self {
        types::Envelope {
            mail_from: e.mail_from.clone(),
            mail_params: e.mail_params.iter().map(Into::into).collect(),
            recipients: e.recipients.clone(),
        }
    }
}

impl From<&host::RecipientInfo> for types::Recipient {
    fn from(r: &host::RecipientInfo) -> Self {
        types::Recipient {
            address: r.address.clone(),
            params: r.params.iter().map(Into::into).collect(),
            account: r.account.clone(),
            tag: r.tag.clone(),
        }
    }
}

impl From<&host::AuthAttempt> for types::AuthAttempt {
    fn from(a: &host::AuthAttempt) -> Self {
        types::AuthAttempt {
            mechanism: a.mechanism.clone(),
            user: a.user.clone(),
            success: a.success,
        }
    }
}

impl From<types::Verdict> for host::Verdict {
    fn from(v: types::Verdict) -> Self {
        match v {
            types::Verdict::Accept => host::Verdict::Accept,
            types::Verdict::Reject(r) => {
                host::Verdict::Reject(host::Reply::sanitize(r.code, &r.enhanced, &r.text, true))
            }
            types::Verdict::Tempfail(r) => {
                host::Verdict::Tempfail(host::Reply::sanitize(r.code, &r.enhanced, &r.text, false))
            }
            types::Verdict::Discard => host::Verdict::Discard,
            types::Verdict::Quarantine(reason) => host::Verdict::Quarantine(reason),
        }
    }
}

impl From<types::Edit> for host::Edit {
    fn from(e: types::Edit) -> Self {
        match e {
            types::Edit::AddHeader((n, v)) => host::Edit::AddHeader(n, v),
            types::Edit::RemoveHeader(n) => host::Edit::RemoveHeader(n),
            types::Edit::ReplaceHeader((n, v)) => host::Edit::ReplaceHeader(n, v),
            types::Edit::AddRecipient(a) => host::Edit::AddRecipient(a),
            types::Edit::RemoveRecipient(a) => host::Edit::RemoveRecipient(a),
            types::Edit::SetFolder(f) => host::Edit::SetFolder(f),
        }
    }
}

/// A plugin's outcome in host types (edits not yet validated).
pub(crate) struct RawOutcome {
    pub(crate) verdict: host::Verdict,
    pub(crate) edits: Vec<host::Edit>,
}

impl From<types::Outcome> for RawOutcome {
    fn from(o: types::Outcome) -> Self {
        RawOutcome {
            verdict: o.verdict.into(),
            edits: o.edits.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<on_route::Action> for host::RouteAction {
    fn from(a: on_route::Action) -> Self {
        match a {
            on_route::Action::Deliver(d) => host::RouteAction::Deliver(host::Delivery {
                account: d.account,
                folder: d.folder,
                flags: d.flags,
            }),
            on_route::Action::Forward(to) => host::RouteAction::Forward(to),
            on_route::Action::Relay(h) => host::RouteAction::Relay(h),
            on_route::Action::Discard => host::RouteAction::Discard,
            on_route::Action::Quarantine(r) => host::RouteAction::Quarantine(r),
            on_route::Action::Reject(r) => {
                host::RouteAction::Reject(host::Reply::sanitize(r.code, &r.enhanced, &r.text, true))
            }
            on_route::Action::Tempfail(r) => host::RouteAction::Tempfail(host::Reply::sanitize(
                r.code,
                &r.enhanced,
                &r.text,
                false,
            )),
        }
    }
}

impl From<&host::RouteAction> for on_route::Action {
    fn from(a: &host::RouteAction) -> Self {
        let reply = |r: &host::Reply| types::Reply {
            code: r.code,
            enhanced: r.enhanced.clone(),
            text: r.text.clone(),
        };
        match a {
            host::RouteAction::Deliver(d) => on_route::Action::Deliver(on_route::Delivery {
                account: d.account.clone(),
                folder: d.folder.clone(),
                flags: d.flags.clone(),
            }),
            host::RouteAction::Forward(to) => on_route::Action::Forward(to.clone()),
            host::RouteAction::Relay(h) => on_route::Action::Relay(h.clone()),
            host::RouteAction::Discard => on_route::Action::Discard,
            host::RouteAction::Quarantine(r) => on_route::Action::Quarantine(r.clone()),
            host::RouteAction::Reject(r) => on_route::Action::Reject(reply(r)),
            host::RouteAction::Tempfail(r) => on_route::Action::Tempfail(reply(r)),
        }
    }
}

impl From<metadata::Hooks> for host::HookSet {
    fn from(h: metadata::Hooks) -> Self {
        let mut set = host::HookSet::default();
        let pairs = [
            (metadata::Hooks::CONNECT, host::Hook::Connect),
            (metadata::Hooks::HELO, host::Hook::Helo),
            (metadata::Hooks::AUTH, host::Hook::Auth),
            (metadata::Hooks::MAIL_FROM, host::Hook::MailFrom),
            (metadata::Hooks::RCPT_TO, host::Hook::RcptTo),
            (metadata::Hooks::DATA, host::Hook::Data),
            (metadata::Hooks::ROUTE, host::Hook::Route),
        ];
        for (flag, hook) in pairs {
            if h.contains(flag) {
                set.insert(hook);
            }
        }
        set
    }
}
