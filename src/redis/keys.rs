//! Every Redis key, channel and index name, under the configured prefix.

/// Every Redis key, channel and index name in one place, all under the configured prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// Earlier session index names, dropped at startup (their documents stay).
    pub fn legacy_session_indexes(&self) -> [String; 3] {
        ["", ":2", ":3"].map(|version| format!("{}idx:session{version}", self.prefix))
    }

    /// JSON transaction document: [`Keys::transaction_prefix_of`] and the id, as the scripts
    /// that write one build it.
    pub fn transaction(&self, number: &str, id: u64) -> String {
        format!("{}{id}", self.transaction_prefix_of(number))
    }
}

/// Declares the key builders, one line each: its parameters and what follows the prefix, with
/// `{name}` where a parameter goes. Each builder is `pub fn name(&self, …) -> String`. The
/// builders differ in nothing else, and a four-line function around each format string hid the
/// table this file is.
macro_rules! keys {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) => $pattern:literal;)*) => {
        impl Keys {
            $(
                $(#[$doc])*
                pub fn $name(&self, $($arg: $ty),*) -> String {
                    format!(concat!("{}", $pattern), self.prefix, $($arg = $arg),*)
                }
            )*
        }
    };
}

keys! {
    /// JSON user document.
    user(username: &str) => "user:{username}";

    /// JSON session document; `id` is the base64url SHA-256 of the token, never the token.
    session(id: &str) => "session:{id}";

    /// Common prefix of session documents (the session index covers it).
    session_prefix() => "session:";

    /// RediSearch index over session documents (TAG user, kind, ip; NUMERIC created_at,
    /// last_seen_at). Versioned: a schema change gets a new name, and the old index is dropped.
    session_index() => "idx:session:4";

    /// Stream of recent failed password sign-ins of existing accounts (user, address), for the
    /// operator console; about 1,000 kept.
    failed_sign_ins() => "audit:failed-sign-ins";

    /// Stream of every operator action (who, what, on whom); about 10,000 kept.
    admin_audit() => "audit:admin";

    /// Failed logins against one account from all unknown clients (expires with the window).
    throttle_user(username: &str) => "throttle:user:{username}";

    /// Failed logins against one account from one client address (IPv4, or IPv6 /64).
    throttle_client(username: &str, group: &str) => "throttle:client:{group}:{username}";

    /// Failed logins from one client address, across accounts.
    throttle_ip(group: &str) => "throttle:ip:{group}";

    /// Failed logins from one known device (by its token's SHA-256).
    throttle_device(id: &str) => "throttle:device:{id}";

    /// WebAuthn ceremonies started from one client address in the current minute: sign-ins
    /// (`signin`, one per login page load) and the rest (`account`) apart.
    throttle_ceremony(kind: &str, group: &str) => "throttle:ceremony:{kind}:{group}";

    /// A user's known devices: hash of SHA-256 of a device token → JSON (first and last sign-in,
    /// address, user agent, kind); each field expires `device_trust_days` after its last use, at
    /// most 10 kept (least recently used dropped).
    devices(username: &str) => "devices:{{user:{username}}}";

    /// Second-factor codes tried against one account (sign-in and step-up), whatever the device.
    throttle_codes(username: &str) => "throttle:codes:{username}";

    /// Set while the owner has been told their second step is locked (one mail per window).
    codes_lock_announced(username: &str) => "throttle:codes-announced:{username}";

    /// A "this wasn't me" link (hex SHA-256 of its token) → JSON (user, what it is about);
    /// single use, 24 h.
    not_me(id: &str) => "not-me:{id}";

    /// A password reset link (hex SHA-256 of its token) → JSON (user, the fingerprint of the
    /// password it replaces, when it was sent); 30 min. A reset changes that password, so the
    /// link, and every other one sent before, stops working.
    password_reset(id: &str) => "password-reset:{id}";

    /// Candidate passwords judged for one client address group in the current minute.
    throttle_password_check(group: &str) => "throttle:password-check:{group}";

    /// An application for an account, waiting for its address to be confirmed (hex SHA-256 of
    /// the link's token) → JSON (name, address, password hash); 24 h, deleted when used.
    email_verification(id: &str) => "email-verify:{id}";

    /// A change of address waiting for the new address to confirm it (hex SHA-256 of the
    /// link's token) → JSON (user, old, new); 24 h, deleted when used.
    email_change(id: &str) => "email-change:{id}";

    /// The old address's link that undoes a change (hex SHA-256 of its token) → JSON (user, the
    /// address now, the address to put back); 24 h, deleted when used.
    email_undo(id: &str) => "email-undo:{id}";

    /// An e-mail address (lower case) → the username that holds it.
    email_owner(address: &str) => "email:{address}";

    /// Counts per hour of what `what` names: reset links asked from an address group
    /// (`reset:<addr>`) or mailed to a user (`reset-mail:<name>`), accounts opened from an
    /// address group (`signup:<addr>`), sign-up mails to an address (`signup-mail:<address>`).
    throttle_hourly(what: &str) => "throttle:hourly:{what}";

    // A user's factor keys share the hash tag `{user:<name>}`: enrolment changes three of them in
    // one script, which Redis Cluster runs only within one slot.

    /// Hash of a user's TOTP factor: `secret` (base32), `enrolled_at` (ms), `last_step` (the
    /// newest time step accepted, so no code is used twice).
    totp(username: &str) => "mfa:{{user:{username}}}:totp";

    /// A TOTP secret shown for enrolment and not yet confirmed by a code (expires).
    totp_pending(username: &str) => "mfa:{{user:{username}}}:totp-pending";

    /// Hash of the code e-mailed for a user's first factor: `digest` (hex SHA-256 of the code),
    /// `binding` (the enrolment it is for), `tries`; single use, expires in 10 min.
    enrol_code(username: &str) => "mfa:{{user:{username}}}:enrol-code";

    /// The code e-mailed to renew a user's password after "this wasn't me" (same fields as
    /// [`Keys::enrol_code`]); one at a time, not replaced while it lives (10 min).
    renew_code(username: &str) => "mfa:{{user:{username}}}:renew-code";

    /// Codes e-mailed to one user in the current window (so nobody floods a mailbox).
    throttle_mail(username: &str) => "throttle:mail:{username}";

    /// Stream of mail waiting to be sent (`to`, `subject`, `text`), read by the consumer group
    /// `mailers` (one consumer per process); an entry is deleted once sent.
    mail_outbox() => "mail:outbox";

    /// When the user's recovery codes were made (ms): "this wasn't me" drops codes made in the
    /// last 24 hours, whoever made them.
    recovery_issued(username: &str) => "mfa:{{user:{username}}}:recovery-at";

    /// Set of a user's unused recovery codes, each as hex SHA-256.
    recovery_codes(username: &str) => "mfa:{{user:{username}}}:recovery";

    /// Hash of a user's passkeys: credential id (base64url) → JSON (name, times, public key).
    passkeys(username: &str) => "mfa:{{user:{username}}}:passkeys";

    /// A user's WebAuthn user handle (a random UUID, so the authenticator holds no username).
    user_handle(username: &str) => "mfa:{{user:{username}}}:handle";

    /// User handle → username: who a discoverable passkey's assertion claims to be.
    handle_owner(handle: &str) => "mfa:handle-owner:{handle}";

    /// A password-verified sign-in waiting for its second factor (base64url SHA-256 of the
    /// `mfa_token`): hash with the JSON `state` and the count of codes tried; expires in 5 min.
    pre_auth(id: &str) => "preauth:{id}";

    /// A WebAuthn ceremony's server state, named by the hex SHA-256 of its challenge (which
    /// comes back inside the client's signed data); single-use, expires in 5 min.
    ceremony(id: &str) => "ceremony:{id}";

    /// Stream of a user's security activity (sign-ins, factor changes, revocations), bounded in
    /// length and age.
    activity(username: &str) => "activity:{username}";

    // Everything written for one account shares the hash tag `{acct:<number>}`, so the atomic
    // transaction script touches a single Redis Cluster slot.

    /// Set of all account numbers (the generator's work list).
    accounts() => "accounts";

    /// Set of the accounts customers opened themselves (`/signup`): no generated transactions,
    /// but transfer recovery looks at them.
    accounts_opened() => "accounts:opened";

    /// JSON account document (number, holder, city, username).
    account(number: &str) => "{{acct:{number}}}:account";

    /// Balance in integer cents.
    balance(number: &str) => "{{acct:{number}}}:balance";

    /// Stream of the account's transactions, each entry with its document (recent list, replay).
    stream(number: &str) => "{{acct:{number}}}:stream";

    /// Sorted set of closing balances at one resolution of the balance chart (`seconds`,
    /// `minutes`, `five-minutes`): score = bucket start ms, member = `<ts>:<cents>` of the
    /// bucket's last transaction. A window reads one of these, never the stream.
    balance_series(number: &str, resolution: &str) => "{{acct:{number}}}:{resolution}";

    /// List of the account's newest transactions (`<stream id> <document>`, newest first, at most
    /// 100): the recent list in one plain read.
    recent(number: &str) => "{{acct:{number}}}:recent";

    /// JSON transfer document, on the sender's slot (status, amount, payee, confirmation).
    transfer(from: &str, id: &str) => "transfer:{{acct:{from}}}:{id}";

    /// Sorted set: the transfers the account's holder started, by when (ids; the documents are
    /// [`Keys::transfer`]); kept as long as transactions, for the customer's export.
    transfers_of(number: &str) => "{{acct:{number}}}:transfers";

    /// Cents the account sent by transfer on one UTC day (`YYYYMMDD`): the daily limit.
    sent_on(number: &str, day: &str) => "{{acct:{number}}}:sent:{day}";

    /// Hash: transfer id → the credit the account's debit still owes its payee (JSON).
    credits_owed(number: &str) => "{{acct:{number}}}:owed";

    /// Sorted set: the payees the account sent to, by last time (the form's "recent payees").
    payees(number: &str) => "{{acct:{number}}}:payees";

    /// Marker that transfer `id` was credited to the account: a credit lands once.
    credited(number: &str, id: &str) => "{{acct:{number}}}:credited:{id}";

    /// An `Idempotency-Key` a user sent (hex SHA-256 of it): the request and its transfer.
    idempotency(username: &str, key_hash: &str) => "idem:{{user:{username}}}:{key_hash}";

    /// Hash: low-value transfers (`count`, `cents`) since the user's last strong confirmation.
    sca_tally(username: &str) => "sca:{{user:{username}}}";

    /// Sorted set: the account's transfers waiting for their confirmation, by when they expire
    /// (at most `max_pending_transfers`).
    pending_transfers(number: &str) => "{{acct:{number}}}:pending";

    /// Sorted set: the account's transfers that are `executing` (confirmed, not yet debited), by
    /// when; the recovery task carries out any left behind.
    executing(number: &str) => "{{acct:{number}}}:executing";

    /// Transfers one user started in the current minute.
    throttle_transfers(username: &str) => "throttle:transfer:{username}";

    /// Leader lock of the transfer recovery task.
    transfer_recovery_leader() => "transfer:recovery:leader";

    /// Sorted set: vendor → cents spent there.
    spenders(number: &str) => "{{acct:{number}}}:spenders";


    /// What an account's transaction keys start with (`…tx:{acct:N}:`), for scripts that build
    /// them from stream entries (same hash slot as the account's other keys).
    transaction_prefix_of(number: &str) => "tx:{{acct:{number}}}:";

    /// Common prefix of transaction documents (the transaction index covers it).
    transaction_prefix() => "tx:";

    /// RediSearch index over transaction documents.
    transaction_index() => "idx:tx";

    /// Shard channel (`SPUBLISH`, on the account's slot) announcing the account's new
    /// transactions and security notices.
    events(number: &str) => "events:{{acct:{number}}}";

    /// The key [`super::Db::replicated`] writes before its `WAITAOF`.
    replication_probe() => "replication:probe";

    /// Sorted set: accounts with a dashboard or app streaming them now, by when an app instance
    /// last said so (every `WATCH_REFRESH`, 2 s); in demo mode the generator
    /// writes for the customers' accounts among them.
    watched() => "generator:watched";

    generator_leader() => "generator:leader";
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn builders_put_the_prefix_first_and_keep_hash_tag_braces() {
        let keys = Keys::new("rb:");
        assert_eq!(keys.user("ada"), "rb:user:ada");
        assert_eq!(keys.throttle_client("ada", "127.0.0.1"), "rb:throttle:client:127.0.0.1:ada");
        assert_eq!(keys.devices("ada"), "rb:devices:{user:ada}");
        assert_eq!(keys.transaction("42", 7), format!("{}7", keys.transaction_prefix_of("42")));
        assert_eq!(keys.transaction("42", 7), "rb:tx:{acct:42}:7");
        assert_eq!(keys.legacy_session_indexes()[1], "rb:idx:session:2");
    }
}
