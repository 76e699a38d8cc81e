//! `mysql_native_password` arithmetic.
//!
//! The server stores `H2 = SHA1(SHA1(password))`. A client answers a salt
//! with `SHA1(password) XOR SHA1(salt ++ H2)`. Knowing `H2`, Causeway can
//! check an answer and recover `H1 = SHA1(password)` (the "stage-1 hash"),
//! which is all it needs to answer any backend's salt as the same user:
//! the cleartext password never reaches it.

use sha1::{Digest, Sha1};

pub type Sha1Hash = [u8; 20];

fn sha1(parts: &[&[u8]]) -> Sha1Hash {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// What an account's password hash means to authentication.
#[derive(Clone, PartialEq, Eq)]
pub enum StoredHash {
    /// Empty password: the client sends an empty answer.
    Empty,
    /// `SHA1(SHA1(password))`.
    Native(Sha1Hash),
}

impl std::fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredHash::Empty => f.write_str("StoredHash::Empty"),
            StoredHash::Native(_) => f.write_str("StoredHash::Native(<redacted>)"),
        }
    }
}

impl StoredHash {
    /// Parses the `authentication_string` of a `mysql_native_password`
    /// account: empty, or `*` followed by 40 hex digits.
    pub fn parse(s: &str) -> Option<StoredHash> {
        if s.is_empty() {
            return Some(StoredHash::Empty);
        }
        let hex = s.strip_prefix('*')?;
        if hex.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(StoredHash::Native(out))
    }

    /// The stored form of a cleartext password (used for accounts listed in
    /// the configuration with a password).
    pub fn from_password(password: &[u8]) -> StoredHash {
        if password.is_empty() {
            StoredHash::Empty
        } else {
            StoredHash::Native(sha1(&[&sha1(&[password])]))
        }
    }
}

/// What Causeway knows after a client proved its password: enough to log in
/// to a backend as that client.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Empty,
    /// `SHA1(password)`.
    Stage1(Sha1Hash),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Empty => f.write_str("Credential::Empty"),
            Credential::Stage1(_) => f.write_str("Credential::Stage1(<redacted>)"),
        }
    }
}

impl Credential {
    pub fn from_password(password: &[u8]) -> Credential {
        if password.is_empty() {
            Credential::Empty
        } else {
            Credential::Stage1(sha1(&[password]))
        }
    }

    /// The answer to a server's `mysql_native_password` salt.
    pub fn scramble(&self, salt: &[u8]) -> Vec<u8> {
        match self {
            Credential::Empty => Vec::new(),
            Credential::Stage1(h1) => {
                let h2 = sha1(&[h1]);
                let mask = sha1(&[salt, &h2]);
                xor(h1, &mask).to_vec()
            }
        }
    }
}

fn xor(a: &Sha1Hash, b: &Sha1Hash) -> Sha1Hash {
    let mut out = [0u8; 20];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b.iter())) {
        *o = x ^ y;
    }
    out
}

/// Checks a client's answer to `salt` against the stored hash. On success
/// returns the credential to use towards backends.
pub fn verify(stored: &StoredHash, salt: &[u8], answer: &[u8]) -> Option<Credential> {
    match stored {
        StoredHash::Empty => answer.is_empty().then_some(Credential::Empty),
        StoredHash::Native(h2) => {
            let answer: &Sha1Hash = answer.try_into().ok()?;
            let mask = sha1(&[salt, h2]);
            let h1 = xor(answer, &mask);
            // Constant-time compare: the answer comes from an unauthenticated peer.
            let check = sha1(&[&h1]);
            let diff = check
                .iter()
                .zip(h2.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            (diff == 0).then_some(Credential::Stage1(h1))
        }
    }
}

/// A fresh salt of 20 printable, non-NUL bytes (clients treat the salt as a
/// C string in places).
pub fn new_salt() -> [u8; 20] {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in s.iter_mut() {
        *b = rng.random_range(0x21..0x7F);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hash_of_password() {
        // PASSWORD('password') as printed by MariaDB.
        let h = StoredHash::from_password(b"password");
        assert_eq!(
            h,
            StoredHash::parse("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19").unwrap()
        );
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong_password() {
        let salt = new_salt();
        let stored = StoredHash::from_password(b"s3cret");
        let answer = Credential::from_password(b"s3cret").scramble(&salt);
        assert_eq!(
            verify(&stored, &salt, &answer),
            Some(Credential::from_password(b"s3cret"))
        );
        let wrong = Credential::from_password(b"nope").scramble(&salt);
        assert_eq!(verify(&stored, &salt, &wrong), None);
        assert_eq!(verify(&stored, &salt, b""), None);
        assert_eq!(verify(&stored, &salt, b"short"), None);
    }

    #[test]
    fn recovered_credential_answers_another_salt_like_the_password() {
        let (s1, s2) = (new_salt(), new_salt());
        let stored = StoredHash::from_password(b"pw");
        let answer = Credential::from_password(b"pw").scramble(&s1);
        let cred = verify(&stored, &s1, &answer).unwrap();
        assert_eq!(
            cred.scramble(&s2),
            Credential::from_password(b"pw").scramble(&s2)
        );
    }

    #[test]
    fn empty_password() {
        let salt = new_salt();
        assert_eq!(StoredHash::parse(""), Some(StoredHash::Empty));
        assert_eq!(
            verify(&StoredHash::Empty, &salt, b""),
            Some(Credential::Empty)
        );
        assert_eq!(verify(&StoredHash::Empty, &salt, b"x"), None);
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        assert_eq!(
            StoredHash::parse("2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            None
        );
        assert_eq!(StoredHash::parse("*2470"), None);
        assert_eq!(
            StoredHash::parse("*ZZ70C0C06DEE42FD1618BB99005ADCA2EC9D1E19"),
            None
        );
        assert_eq!(
            StoredHash::parse("*é470C0C06DEE42FD1618BB99005ADCA2EC9D1E1"),
            None
        );
    }

    #[test]
    fn salt_is_printable() {
        assert!(new_salt().iter().all(|b| (0x21..0x7F).contains(b)));
    }
}
