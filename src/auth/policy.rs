//! The password rules (NIST SP 800-63B-4, 3.1.1.2), one set for every way a password is chosen
//! (a new account, a change, a reset, a renewal after "this wasn't me"):
//!
//! - at least 15 characters while the password is the account's only factor, 8 once it has a
//!   second one; up to `MAX_PASSWORD_BYTES` (1,024 bytes, so 64 characters of any script fit);
//!   any Unicode, counted and hashed in NFKC;
//! - no composition rules and no expiry;
//! - refused when it contains the user's name, username or address, or when zxcvbn (its
//!   dictionaries hold 30,000 common and leaked passwords, names and English words, and it sees
//!   keyboard rows, repeats, sequences and dates) estimates 10^8 guesses or fewer (a score below 3; with a second factor, 10^6 or fewer).
//!   The message says which.
//!
//! The demo passwords predate these rules: they keep working, and a sign-in with a password that
//! breaks them marks the account so its pages ask for a change (never a forced detour).

use serde::Serialize;

use crate::auth::model::User;
use crate::auth::password::{MAX_PASSWORD_BYTES, normalized};

/// The shortest password while it is the account's only factor.
pub const MIN_ONLY_FACTOR: usize = 15;
/// The shortest password of an account with a second factor.
pub const MIN_WITH_SECOND: usize = 8;
/// zxcvbn reads this many characters at most: its matching grows faster than the length (28 ms
/// for 100 characters in a release build), and whatever follows only adds guesses.
const ESTIMATED_CHARS: usize = 64;
/// The lowest zxcvbn score accepted while the password is the only factor (3: more than 10^8
/// guesses, far beyond an online attack on a throttled account, and years of a 19 MiB argon2id
/// offline), and with a second factor (2: more than 10^6 guesses; a guessed password still
/// meets the second factor, and zxcvbn counts any 8 characters as at most 10^8).
fn min_score(has_second_factor: bool) -> u8 {
    if has_second_factor { 2 } else { 3 }
}

/// The shortest password accepted for an account with or without a second factor.
pub fn min_chars(has_second_factor: bool) -> usize {
    if has_second_factor { MIN_WITH_SECOND } else { MIN_ONLY_FACTOR }
}

/// What a password may not contain: the user's name, username and address (and the address's
/// local part), each of at least 3 characters.
pub fn personal_words(user: &User) -> Vec<String> {
    let mut words = words_of(&user.display_name, user.email.as_deref());
    if user.username.chars().count() >= 3 {
        words.push(user.username.clone());
    }
    words
}

/// The words of a name and an address a password may not contain (each of at least 3
/// characters): the name's words, the address and its local part.
pub fn words_of(name: &str, email: Option<&str>) -> Vec<String> {
    let mut words: Vec<String> = name.split_whitespace().map(str::to_owned).collect();
    if let Some(email) = email {
        words.push(email.to_owned());
        words.extend(email.split('@').next().map(str::to_owned));
    }
    words.retain(|w| w.chars().count() >= 3);
    words
}

/// How strong a candidate password is, for the meter pages show while it is typed (and
/// `POST /api/v1/password/check`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Strength {
    /// zxcvbn's score, 0 (guessed at once) to 4 (beyond 10^10 guesses).
    pub score: u8,
    /// Whether the rules accept it.
    pub acceptable: bool,
    /// Why not, or how to make it stronger; empty when there is nothing to say.
    pub message: String,
}

/// Judges `password` for an account with or without a second factor, whose personal words are
/// `personal` (see [`personal_words`]).
///
/// Length and guessability are judged on what was typed *and* on its NFKC form, the lower of the
/// two counting: NFKC turns one character into as many as 18 ("ﷺ"), which must not make a
/// one-character password long. The byte limit is on what was typed (what a sign-in checks).
pub fn judge(password: &str, has_second_factor: bool, personal: &[String]) -> Strength {
    let typed = password;
    let password = normalized(typed);
    let min = min_chars(has_second_factor);
    let chars = typed.chars().count().min(password.chars().count());
    let inputs: Vec<&str> = personal.iter().map(String::as_str).collect();
    let estimate = |text: &str| {
        let head: String = text.chars().take(ESTIMATED_CHARS).collect();
        zxcvbn::zxcvbn(&head, &inputs)
    };
    let (of_typed, of_normal) = (estimate(typed), estimate(&password));
    let entropy = if of_typed.score() <= of_normal.score() { of_typed } else { of_normal };
    let score = u8::from(entropy.score());
    let refuse = |message: String| Strength { score, acceptable: false, message };
    if chars < min {
        return refuse(format!("Use at least {min} characters ({chars} so far)."));
    }
    if typed.len() > MAX_PASSWORD_BYTES {
        return refuse(format!("Use at most {MAX_PASSWORD_BYTES} bytes."));
    }
    let lower = password.to_lowercase();
    if personal.iter().any(|word| lower.contains(&word.to_lowercase())) {
        return refuse("Leave out your name, username and e-mail address.".into());
    }
    let feedback = entropy.feedback();
    if score < min_score(has_second_factor) {
        let why = feedback.and_then(|f| f.warning()).map(|w| w.to_string());
        let why = why.unwrap_or_else(|| "This password is easy to guess.".into());
        return refuse(format!("{why} Add a few more uncommon words."));
    }
    let tip = feedback.and_then(|f| f.suggestions().first()).map(|s| s.to_string());
    Strength { score, acceptable: true, message: tip.unwrap_or_default() }
}

/// Why `password` cannot be chosen, if it cannot: the [`judge`]'s message.
pub fn problem(password: &str, has_second_factor: bool, personal: &[String]) -> Option<String> {
    let strength = judge(password, has_second_factor, personal);
    (!strength.acceptable).then_some(strength.message)
}

/// [`problem`] on the blocking pool: zxcvbn takes milliseconds of CPU that an async worker
/// serving other requests must not spend.
pub async fn problem_blocking(
    password: &str,
    has_second_factor: bool,
    personal: Vec<String>,
) -> crate::error::Result<Option<String>> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || problem(&password, has_second_factor, &personal))
        .await
        .map_err(|e| crate::error::Error::Internal(format!("password rules: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(password: &str, has_second_factor: bool, personal: &[String]) -> String {
        problem(password, has_second_factor, personal).expect("refused")
    }

    fn words() -> Vec<String> {
        vec!["bob".into(), "Bob".into(), "Jones".into(), "bob@example.com".into()]
    }

    #[test]
    fn length_depends_on_a_second_factor_and_counts_characters_after_nfkc() {
        let fourteen = "quartz violin ";
        assert_eq!(fourteen.chars().count(), 14);
        assert!(refused(fourteen, false, &[]).contains("at least 15"));
        assert!(problem("quartz violin p", false, &[]).is_none(), "15 characters pass");
        assert!(problem("zq7#vk2m", true, &[]).is_none(), "8 with a second factor");
        assert!(refused("zq7#vk2", true, &[]).contains("at least 8"));
        // Four characters of any script count as four, not as their bytes.
        assert!(refused("ŝĉĥĵ", true, &[]).contains("(4 so far)"));
        // One character that NFKC makes 18 is still one character; four that make 20, four.
        assert!(refused("\u{FDFA}", false, &[]).contains("(1 so far)"));
        assert!(refused("\u{33FF}\u{33FE}\u{33FD}\u{33FC}", false, &[]).contains("(4 so far)"));
        // 512 decomposed "é" are 1,536 bytes as typed (1,024 in NFKC): too long to sign in with.
        let decomposed = "e\u{301}".repeat(512);
        assert!(refused(&decomposed, false, &[]).contains("at most 1024 bytes"));
        // A full-width "Ａ" is an "A" in NFKC: the same password, the same length.
        assert_eq!(normalized("Ａ"), "A");
    }

    #[test]
    fn long_passwords_are_accepted_up_to_the_byte_limit() {
        let long = "correct horse battery staple ".repeat(3);
        assert!(long.len() >= 64);
        assert!(problem(&long, false, &[]).is_none());
        let too_long = "x7".repeat(MAX_PASSWORD_BYTES);
        assert!(refused(&too_long, false, &[]).contains("at most 1024 bytes"));
    }

    #[test]
    fn common_and_guessable_passwords_are_refused_with_the_reason() {
        let common = refused("password12345678", false, &[]);
        assert!(common.contains("common"), "{common}");
        let repeats = refused("aaaaaaaaaaaaaaaa", false, &[]);
        assert!(repeats.contains("Repeats"), "{repeats}");
        let keyboard = refused("qwertyuiopasdfgh", false, &[]);
        assert!(keyboard.contains("keys") || keyboard.contains("common"), "{keyboard}");
        assert!(problem("P@ssw0rd", true, &[]).is_some());
    }

    #[test]
    fn the_name_and_address_are_refused_in_any_case() {
        let with_name = refused("violet JONES quartz river", false, &words());
        assert!(with_name.contains("name"), "{with_name}");
        let with_address = refused("xq bob@example.com zr", false, &words());
        assert!(with_address.contains("e-mail"), "{with_address}");
        assert!(problem("violet quartz river lamp", false, &words()).is_none());
    }

    #[test]
    fn the_meter_scores_and_explains() {
        let weak = judge("aaaaaaaaaaaaaaaa", false, &[]);
        assert!(!weak.acceptable && weak.score < min_score(false));
        let strong = judge("violet quartz river lamp", false, &[]);
        assert!(strong.acceptable && strong.score >= min_score(false), "{strong:?}");
    }
}
