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

    /// JSON user document.
    pub fn user(&self, username: &str) -> String {
        format!("{}user:{username}", self.prefix)
    }

    /// JSON session document; `id` is the base64url SHA-256 of the token, never the token.
    pub fn session(&self, id: &str) -> String {
        format!("{}session:{id}", self.prefix)
    }

    /// Common prefix of session documents (the session index covers it).
    pub fn session_prefix(&self) -> String {
        format!("{}session:", self.prefix)
    }

    /// RediSearch index over session documents (TAG user, kind, ip; NUMERIC created_at,
    /// last_seen_at). Versioned: a schema change gets a new name, and the old index is dropped.
    pub fn session_index(&self) -> String {
        format!("{}idx:session:4", self.prefix)
    }

    /// Earlier session index names, dropped at startup (their documents stay).
    pub fn legacy_session_indexes(&self) -> [String; 3] {
        ["", ":2", ":3"].map(|version| format!("{}idx:session{version}", self.prefix))
    }

    /// Stream of recent failed password sign-ins of existing accounts (user, address), for the
    /// operator console; about 1,000 kept.
    pub fn failed_sign_ins(&self) -> String {
        format!("{}audit:failed-sign-ins", self.prefix)
    }

    /// Stream of every operator action (who, what, on whom); about 10,000 kept.
    pub fn admin_audit(&self) -> String {
        format!("{}audit:admin", self.prefix)
    }

    /// Failed logins against one account from all unknown clients (expires with the window).
    pub fn throttle_user(&self, username: &str) -> String {
        format!("{}throttle:user:{username}", self.prefix)
    }

    /// Failed logins against one account from one client address (IPv4, or IPv6 /64).
    pub fn throttle_client(&self, username: &str, group: &str) -> String {
        format!("{}throttle:client:{group}:{username}", self.prefix)
    }

    /// Failed logins from one client address, across accounts.
    pub fn throttle_ip(&self, group: &str) -> String {
        format!("{}throttle:ip:{group}", self.prefix)
    }

    /// Failed logins from one known device (by its token's SHA-256).
    pub fn throttle_device(&self, id: &str) -> String {
        format!("{}throttle:device:{id}", self.prefix)
    }

    /// WebAuthn ceremonies started from one client address in the current minute: sign-ins
    /// (`signin`, one per login page load) and the rest (`account`) apart.
    pub fn throttle_ceremony(&self, kind: &str, group: &str) -> String {
        format!("{}throttle:ceremony:{kind}:{group}", self.prefix)
    }

    /// A user's known devices: hash of SHA-256 of a device token → JSON (first and last sign-in,
    /// address, user agent, kind); each field expires `device_trust_days` after its last use, at
    /// most 10 kept (least recently used dropped).
    pub fn devices(&self, username: &str) -> String {
        format!("{}devices:{{user:{username}}}", self.prefix)
    }

    /// Second-factor codes tried against one account (sign-in and step-up), whatever the device.
    pub fn throttle_codes(&self, username: &str) -> String {
        format!("{}throttle:codes:{username}", self.prefix)
    }

    /// Set while the owner has been told their second step is locked (one mail per window).
    pub fn codes_lock_announced(&self, username: &str) -> String {
        format!("{}throttle:codes-announced:{username}", self.prefix)
    }

    /// A "this wasn't me" link (hex SHA-256 of its token) → JSON (user, what it is about);
    /// single use, 24 h.
    pub fn not_me(&self, id: &str) -> String {
        format!("{}not-me:{id}", self.prefix)
    }

    /// A password reset link (hex SHA-256 of its token) → JSON (user, the fingerprint of the
    /// password it replaces, when it was sent); 30 min. A reset changes that password, so the
    /// link, and every other one sent before, stops working.
    pub fn password_reset(&self, id: &str) -> String {
        format!("{}password-reset:{id}", self.prefix)
    }

    /// Candidate passwords judged for one client address group in the current minute.
    pub fn throttle_password_check(&self, group: &str) -> String {
        format!("{}throttle:password-check:{group}", self.prefix)
    }

    /// An application for an account, waiting for its address to be confirmed (hex SHA-256 of
    /// the link's token) → JSON (name, address, password hash); 24 h, deleted when used.
    pub fn email_verification(&self, id: &str) -> String {
        format!("{}email-verify:{id}", self.prefix)
    }

    /// A change of address waiting for the new address to confirm it (hex SHA-256 of the
    /// link's token) → JSON (user, old, new); 24 h, deleted when used.
    pub fn email_change(&self, id: &str) -> String {
        format!("{}email-change:{id}", self.prefix)
    }

    /// The old address's link that undoes a change (hex SHA-256 of its token) → JSON (user, the
    /// address now, the address to put back); 24 h, deleted when used.
    pub fn email_undo(&self, id: &str) -> String {
        format!("{}email-undo:{id}", self.prefix)
    }

    /// An e-mail address (lower case) → the username that holds it.
    pub fn email_owner(&self, address: &str) -> String {
        format!("{}email:{address}", self.prefix)
    }

    /// Counts per hour of what `what` names: reset links asked from an address group
    /// (`reset:<addr>`) or mailed to a user (`reset-mail:<name>`), accounts opened from an
    /// address group (`signup:<addr>`), sign-up mails to an address (`signup-mail:<address>`).
    pub fn throttle_hourly(&self, what: &str) -> String {
        format!("{}throttle:hourly:{what}", self.prefix)
    }

    // A user's factor keys share the hash tag `{user:<name>}`: enrolment changes three of them in
    // one script, which Redis Cluster runs only within one slot.

    /// Hash of a user's TOTP factor: `secret` (base32), `enrolled_at` (ms), `last_step` (the
    /// newest time step accepted, so no code is used twice).
    pub fn totp(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:totp", self.prefix)
    }

    /// A TOTP secret shown for enrolment and not yet confirmed by a code (expires).
    pub fn totp_pending(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:totp-pending", self.prefix)
    }

    /// Hash of the code e-mailed for a user's first factor: `digest` (hex SHA-256 of the code),
    /// `binding` (the enrolment it is for), `tries`; single use, expires in 10 min.
    pub fn enrol_code(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:enrol-code", self.prefix)
    }

    /// The code e-mailed to renew a user's password after "this wasn't me" (same fields as
    /// [`Keys::enrol_code`]); one at a time, not replaced while it lives (10 min).
    pub fn renew_code(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:renew-code", self.prefix)
    }

    /// Codes e-mailed to one user in the current window (so nobody floods a mailbox).
    pub fn throttle_mail(&self, username: &str) -> String {
        format!("{}throttle:mail:{username}", self.prefix)
    }

    /// Stream of mail waiting to be sent (`to`, `subject`, `text`), read by the consumer group
    /// `mailers` (one consumer per process); an entry is deleted once sent.
    pub fn mail_outbox(&self) -> String {
        format!("{}mail:outbox", self.prefix)
    }

    /// When the user's recovery codes were made (ms): "this wasn't me" drops codes made in the
    /// last 24 hours, whoever made them.
    pub fn recovery_issued(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:recovery-at", self.prefix)
    }

    /// Set of a user's unused recovery codes, each as hex SHA-256.
    pub fn recovery_codes(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:recovery", self.prefix)
    }

    /// Hash of a user's passkeys: credential id (base64url) → JSON (name, times, public key).
    pub fn passkeys(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:passkeys", self.prefix)
    }

    /// A user's WebAuthn user handle (a random UUID, so the authenticator holds no username).
    pub fn user_handle(&self, username: &str) -> String {
        format!("{}mfa:{{user:{username}}}:handle", self.prefix)
    }

    /// User handle → username: who a discoverable passkey's assertion claims to be.
    pub fn handle_owner(&self, handle: &str) -> String {
        format!("{}mfa:handle-owner:{handle}", self.prefix)
    }

    /// A password-verified sign-in waiting for its second factor (base64url SHA-256 of the
    /// `mfa_token`): hash with the JSON `state` and the count of codes tried; expires in 5 min.
    pub fn pre_auth(&self, id: &str) -> String {
        format!("{}preauth:{id}", self.prefix)
    }

    /// A WebAuthn ceremony's server state, named by the hex SHA-256 of its challenge (which
    /// comes back inside the client's signed data); single-use, expires in 5 min.
    pub fn ceremony(&self, id: &str) -> String {
        format!("{}ceremony:{id}", self.prefix)
    }

    /// Stream of a user's security activity (sign-ins, factor changes, revocations), bounded in
    /// length and age.
    pub fn activity(&self, username: &str) -> String {
        format!("{}activity:{username}", self.prefix)
    }

    // Everything written for one account shares the hash tag `{acct:<number>}`, so the atomic
    // transaction script touches a single Redis Cluster slot.

    /// Set of all account numbers (the generator's work list).
    pub fn accounts(&self) -> String {
        format!("{}accounts", self.prefix)
    }

    /// Set of the accounts customers opened themselves (`/signup`): no generated transactions,
    /// but transfer recovery looks at them.
    pub fn accounts_opened(&self) -> String {
        format!("{}accounts:opened", self.prefix)
    }

    /// JSON account document (number, holder, city, username).
    pub fn account(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:account", self.prefix)
    }

    /// Balance in integer cents.
    pub fn balance(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:balance", self.prefix)
    }

    /// Stream of the account's transactions, each entry with its document (recent list, replay).
    pub fn stream(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:stream", self.prefix)
    }

    /// Sorted set of closing balances at one resolution of the balance chart (`seconds`,
    /// `minutes`, `five-minutes`): score = bucket start ms, member = `<ts>:<cents>` of the
    /// bucket's last transaction. A window reads one of these, never the stream.
    pub fn balance_series(&self, number: &str, resolution: &str) -> String {
        format!("{}{{acct:{number}}}:{resolution}", self.prefix)
    }

    /// List of the account's newest transactions (`<stream id> <document>`, newest first, at most
    /// 100): the recent list in one plain read.
    pub fn recent(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:recent", self.prefix)
    }

    /// JSON transfer document, on the sender's slot (status, amount, payee, confirmation).
    pub fn transfer(&self, from: &str, id: &str) -> String {
        format!("{}transfer:{{acct:{from}}}:{id}", self.prefix)
    }

    /// Sorted set: the transfers the account's holder started, by when (ids; the documents are
    /// [`Keys::transfer`]); kept as long as transactions, for the customer's export.
    pub fn transfers_of(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:transfers", self.prefix)
    }

    /// Cents the account sent by transfer on one UTC day (`YYYYMMDD`): the daily limit.
    pub fn sent_on(&self, number: &str, day: &str) -> String {
        format!("{}{{acct:{number}}}:sent:{day}", self.prefix)
    }

    /// Hash: transfer id → the credit the account's debit still owes its payee (JSON).
    pub fn credits_owed(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:owed", self.prefix)
    }

    /// Sorted set: the payees the account sent to, by last time (the form's "recent payees").
    pub fn payees(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:payees", self.prefix)
    }

    /// Marker that transfer `id` was credited to the account: a credit lands once.
    pub fn credited(&self, number: &str, id: &str) -> String {
        format!("{}{{acct:{number}}}:credited:{id}", self.prefix)
    }

    /// An `Idempotency-Key` a user sent (hex SHA-256 of it): the request and its transfer.
    pub fn idempotency(&self, username: &str, key_hash: &str) -> String {
        format!("{}idem:{{user:{username}}}:{key_hash}", self.prefix)
    }

    /// Hash: low-value transfers (`count`, `cents`) since the user's last strong confirmation.
    pub fn sca_tally(&self, username: &str) -> String {
        format!("{}sca:{{user:{username}}}", self.prefix)
    }

    /// Sorted set: the account's transfers waiting for their confirmation, by when they expire
    /// (at most `max_pending_transfers`).
    pub fn pending_transfers(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:pending", self.prefix)
    }

    /// Sorted set: the account's transfers that are `executing` (confirmed, not yet debited), by
    /// when; the recovery task carries out any left behind.
    pub fn executing(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:executing", self.prefix)
    }

    /// Transfers one user started in the current minute.
    pub fn throttle_transfers(&self, username: &str) -> String {
        format!("{}throttle:transfer:{username}", self.prefix)
    }

    /// Leader lock of the transfer recovery task.
    pub fn transfer_recovery_leader(&self) -> String {
        format!("{}transfer:recovery:leader", self.prefix)
    }

    /// Sorted set: vendor → cents spent there.
    pub fn spenders(&self, number: &str) -> String {
        format!("{}{{acct:{number}}}:spenders", self.prefix)
    }

    /// JSON transaction document.
    pub fn transaction(&self, number: &str, id: u64) -> String {
        format!("{}{id}", self.transaction_prefix_of(number))
    }

    /// What an account's transaction keys start with (`…tx:{acct:N}:`), for scripts that build
    /// them from stream entries (same hash slot as the account's other keys).
    pub fn transaction_prefix_of(&self, number: &str) -> String {
        format!("{}tx:{{acct:{number}}}:", self.prefix)
    }

    /// Common prefix of transaction documents (the transaction index covers it).
    pub fn transaction_prefix(&self) -> String {
        format!("{}tx:", self.prefix)
    }

    /// RediSearch index over transaction documents.
    pub fn transaction_index(&self) -> String {
        format!("{}idx:tx", self.prefix)
    }

    /// Shard channel (`SPUBLISH`, on the account's slot) announcing the account's new
    /// transactions and security notices.
    pub fn events(&self, number: &str) -> String {
        format!("{}events:{{acct:{number}}}", self.prefix)
    }

    /// The key [`super::Db::replicated`] writes before its `WAITAOF`.
    pub fn replication_probe(&self) -> String {
        format!("{}replication:probe", self.prefix)
    }

    /// Sorted set: accounts with a dashboard or app streaming them now, by when an app instance
    /// last said so (every [`crate::bank::store::WATCH_REFRESH`]); in demo mode the generator
    /// writes for the customers' accounts among them.
    pub fn watched(&self) -> String {
        format!("{}generator:watched", self.prefix)
    }

    pub fn generator_leader(&self) -> String {
        format!("{}generator:leader", self.prefix)
    }
}
