//! The e-mailed code that binds a user's *first* second factor (docs/SECURITY.md G.34), and that
//! renews a password the owner said was compromised.
//!
//! A password alone must not reach strong authentication: whoever phished it could otherwise add
//! their own authenticator, confirm payments with it and lock the owner out. So adding the first
//! factor also needs a code sent to the address the account already trusts. The code is bound to
//! one enrolment (the pending TOTP secret, or the passkey ceremony's challenge), has 8 digits,
//! lives 10 minutes, allows 5 tries and works once — checked and burnt by one script, so
//! parallel guesses cannot get more tries. Later factors are added under a step-up with an
//! existing one instead (see `guard::FactorAdder`).

use rand::Rng;

use crate::auth::throttle::per_window;
use crate::auth::users;
use crate::error::{Error, Result};
use crate::mail::Mailer;
use crate::redis::Db;
use crate::redis::lua::lua;
use crate::secret::sha256_hex;

/// How long an e-mailed code works.
pub const CODE_SECS: u64 = 600;
/// Wrong codes before the code is void.
pub const MAX_TRIES: i64 = 5;
/// Codes e-mailed to one user per [`MAIL_WINDOW_SECS`]: enough to retry, too few to flood.
const MAILS_PER_WINDOW: i64 = 5;
const MAIL_WINDOW_SECS: u64 = 900;

/// What the code is for, in the mail's words.
#[derive(Debug, Clone, Copy)]
pub enum NewFactor {
    Totp,
    Passkey,
    /// A new password, after "this wasn't me".
    Password,
}

impl NewFactor {
    fn describe(self) -> &'static str {
        match self {
            NewFactor::Totp => "adds an authenticator app to your account's sign-in",
            NewFactor::Passkey => "adds a passkey to your account's sign-in",
            NewFactor::Password => "lets you choose a new password as you sign in",
        }
    }
}

/// The enrolment a code is for: the hex SHA-256 of what names it (the pending TOTP secret, the
/// passkey ceremony's challenge), so a code mailed for one enrolment confirms no other.
pub fn binding(of: &str) -> String {
    sha256_hex(of)
}

/// A new 8-digit code (uniform over 10^8, from the thread's CSPRNG).
fn new_code() -> String {
    format!("{:08}", rand::thread_rng().gen_range(0..100_000_000u32))
}

/// Mails a new code for `enrolment` to the user's address at once (replacing any earlier code):
/// the user is waiting for it, so a mail server that fails is their 503. Refused when the
/// account has no address, or when too many were sent lately (429).
pub async fn send(
    db: &Db,
    mailer: &Mailer,
    username: &str,
    factor: NewFactor,
    enrolment: &str,
) -> Result<()> {
    if let Some((to, text)) = issue(db, username, factor, enrolment).await? {
        mailer.send(&to, SUBJECT, text).await?;
    }
    Ok(())
}

/// [`send`] through the mail outbox, for a step that cannot wait for the mail server (a sign-in
/// that has no mailer at hand); sent within a moment.
pub async fn queue(db: &Db, username: &str, factor: NewFactor, enrolment: &str) -> Result<()> {
    if let Some((to, text)) = issue(db, username, factor, enrolment).await? {
        crate::mail::queue(db, &to, SUBJECT, &text).await?;
    }
    Ok(())
}

/// The key a code for `factor` lives under. A renewal code has its own, and is not replaced
/// while it lives: whoever keeps signing in with a compromised password must not be able to
/// replace (or use up the mail budget of) the code its owner is about to type.
fn code_key(db: &Db, username: &str, factor: NewFactor) -> String {
    match factor {
        NewFactor::Password => db.keys.renew_code(username),
        NewFactor::Totp | NewFactor::Passkey => db.keys.enrol_code(username),
    }
}

const SUBJECT: &str = "Your redbank confirmation code";

/// Stores a new code for `enrolment`; the address and the message's text, or None when a
/// renewal code still lives (the owner has it in their mailbox already).
async fn issue(
    db: &Db,
    username: &str,
    factor: NewFactor,
    enrolment: &str,
) -> Result<Option<(String, String)>> {
    let user = users::get_user(db, username).await?.ok_or(Error::Unauthorized)?;
    let Some(address) = user.email.clone() else {
        return Err(Error::Conflict(
            "Your account has no e-mail address to send a confirmation code to. Please contact \
             support."
                .into(),
        ));
    };
    let key = code_key(db, username, factor);
    let replace = !matches!(factor, NewFactor::Password);
    if !replace {
        let live: bool = db.query(redis::cmd("EXISTS").arg(&key)).await?;
        if live {
            return Ok(None);
        }
    }
    per_window(db, &db.keys.throttle_mail(username), MAILS_PER_WINDOW, MAIL_WINDOW_SECS).await?;
    let code = new_code();
    let (digest, binding) = (sha256_hex(&code), binding(enrolment));
    let stored: i64 = db
        .run(async |c| {
            lua!("auth/factors/lua/email_code_store")
                .key(&key)
                .arg(&digest)
                .arg(&binding)
                .arg(CODE_SECS)
                .arg(if replace { "1" } else { "0" })
                .invoke_async(c)
                .await
        })
        .await?;
    if stored == 0 {
        return Ok(None);
    }
    let text = format!(
        "Hello {name},\n\n\
         Your redbank confirmation code is:\n\n    {code}\n\n\
         It {what} and works once, for the next {minutes} minutes.\n\n\
         If you did not ask for it, someone knows your password: do not share this code with \
         anyone (redbank never asks for it by phone or chat), and change your password.\n",
        name = user.display_name,
        what = factor.describe(),
        minutes = CODE_SECS / 60,
    );
    Ok(Some((address, text)))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::Invalid { field: "email_code", message: message.into() }
}

/// Spends the user's e-mailed code on `enrolment`: Ok once, for the right code; 422 naming
/// `email_code` when it is missing, wrong, used up, expired, or was sent for another enrolment.
pub async fn redeem(
    db: &Db,
    username: &str,
    factor: NewFactor,
    enrolment: &str,
    code: Option<&str>,
) -> Result<()> {
    let code: String = code.unwrap_or_default().chars().filter(|c| !c.is_whitespace()).collect();
    if code.is_empty() {
        return Err(invalid("Enter the code we e-mailed you: a first sign-in factor needs it."));
    }
    if code.len() > 16 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("The e-mailed code has 8 digits."));
    }
    let key = code_key(db, username, factor);
    let (digest, binding) = (sha256_hex(&code), binding(enrolment));
    let left: i64 = db
        .run(async |c| {
            lua!("auth/factors/lua/email_code_redeem")
                .key(&key)
                .arg(&digest)
                .arg(&binding)
                .arg(MAX_TRIES)
                .invoke_async(c)
                .await
        })
        .await?;
    match left {
        -2 => Ok(()),
        -1 => Err(invalid("That code has expired or was replaced. Start again for a new one.")),
        0 => Err(invalid("That code is not right, and no tries are left. Start again.")),
        left => Err(invalid(format!("That code is not right. Tries left: {left}."))),
    }
}
