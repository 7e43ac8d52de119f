//! Optional bearer-token auth: the token type (never printed) and the pure check every request passes first.
//!
//! | configured token | `Authorization` header              | result            |
//! |------------------|-------------------------------------|-------------------|
//! | none             | anything or nothing                 | allowed           |
//! | `T`              | `Bearer T` (scheme case-insensitive) | allowed           |
//! | `T`              | missing, other scheme, other token  | 401 Unauthorized  |
//!
//! The token comparison is constant-time in the token's bytes (`subtle`); only the length can
//! be learned from timing, as with kube-apiserver's static token file. The token appears in no
//! `Debug`, `Display`, log line or error message — only [`BearerToken::expose`] yields it, for
//! writing the kubeconfig.

use http::HeaderMap;
use subtle::ConstantTimeEq;

/// A bearer token: 1–4096 characters of RFC 6750's `b64token` set (`A–Z a–z 0–9 - . _ ~ + /`,
/// then optional trailing `=`), so it is a valid header value and needs no quoting in YAML.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

/// Why a token was refused; the message never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Empty (after trimming a token file's trailing newline).
    #[error("the bearer token is empty")]
    Empty,
    /// Longer than 4096 bytes.
    #[error("the bearer token is longer than 4096 bytes")]
    TooLong,
    /// A character outside the `b64token` set (position given, character not).
    #[error("the bearer token has a character outside A-Z a-z 0-9 - . _ ~ + / and trailing = at byte {0}")]
    BadCharacter(usize),
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

impl BearerToken {
    /// Check and wrap a token.
    pub fn new(token: impl Into<String>) -> Result<Self, TokenError> {
        let token = token.into();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if token.len() > 4096 {
            return Err(TokenError::TooLong);
        }
        let body = token.trim_end_matches('=');
        if body.is_empty() {
            return Err(TokenError::BadCharacter(0));
        }
        if let Some(i) = body.bytes().position(|b| !is_token_char(b)) {
            return Err(TokenError::BadCharacter(i));
        }
        Ok(Self(token))
    }

    /// The token itself, for a kubeconfig or an `Authorization` header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Whether a request with these headers may proceed under `expected`.
pub fn authorized(expected: Option<&BearerToken>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes();
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let presented = rest.trim_ascii();
    expected.matches(presented)
}

/// kube-apiserver's answer to a request without valid credentials.
pub(crate) fn unauthorized_status() -> serde_json::Value {
    crate::status::failure(401, "Unauthorized", "Unauthorized")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_check_follows_its_table() {
        let t = BearerToken::new("s3cr3t-token").unwrap();
        let cases: &[(Option<&BearerToken>, Option<&str>, bool)] = &[
            (None, None, true),
            (None, Some("Bearer whatever"), true),
            (Some(&t), Some("Bearer s3cr3t-token"), true),
            (Some(&t), Some("bearer s3cr3t-token"), true),
            (Some(&t), Some("Bearer  s3cr3t-token "), true),
            (Some(&t), None, false),
            (Some(&t), Some("Bearer"), false),
            (Some(&t), Some("Bearer "), false),
            (Some(&t), Some("Bearer s3cr3t-tokem"), false),
            (Some(&t), Some("Bearer s3cr3t-token2"), false),
            (Some(&t), Some("Bearer s3cr3t"), false),
            (Some(&t), Some("Basic s3cr3t-token"), false),
            (Some(&t), Some("s3cr3t-token"), false),
        ];
        for (expected, auth, want) in cases {
            assert_eq!(
                authorized(*expected, &headers(*auth)),
                *want,
                "{auth:?} under {expected:?}"
            );
        }
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let cases: &[(&str, Result<(), TokenError>)] = &[
            ("abc", Ok(())),
            ("a.b_c~d+e/f-g==", Ok(())),
            ("", Err(TokenError::Empty)),
            ("==", Err(TokenError::BadCharacter(0))),
            ("ab cd", Err(TokenError::BadCharacter(2))),
            ("ab\"cd", Err(TokenError::BadCharacter(2))),
            ("ab=cd", Err(TokenError::BadCharacter(2))),
            ("tök", Err(TokenError::BadCharacter(1))),
        ];
        for (token, want) in cases {
            assert_eq!(BearerToken::new(*token).map(|_| ()), *want, "{token:?}");
            if let Err(e) = BearerToken::new(*token) {
                if !token.is_empty() {
                    assert!(!e.to_string().contains(token), "{e}");
                }
            }
        }
        assert_eq!(BearerToken::new("x".repeat(4097)), Err(TokenError::TooLong));
        let t = BearerToken::new("hunter2").unwrap();
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
        assert_eq!(t.expose(), "hunter2");
    }
}
