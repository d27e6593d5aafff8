//! Simple tokens, etcd's default: opaque strings that map to a user and the auth revision
//! at issue, alive for a TTL that each use renews. They live in memory only; every member
//! assigns the same token when the authenticate entry applies, and loses them on restart
//! (clients then re-authenticate), as in etcd.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{AuthInfo, Error, Result};

/// etcd's simple token TTL.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Live tokens per member; the oldest-expiring goes first beyond it.
pub const MAX_TOKENS: usize = 100_000;

#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    tokens: BTreeMap<String, (AuthInfo, Duration)>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> Self {
        SimpleTokens {
            ttl,
            tokens: BTreeMap::new(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn assign(&mut self, token: String, info: AuthInfo, now: Duration) {
        if self.tokens.len() >= MAX_TOKENS {
            let oldest = self
                .tokens
                .iter()
                .min_by_key(|(t, (_, exp))| (*exp, (*t).clone()))
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                self.tokens.remove(&t);
            }
        }
        self.tokens.insert(token, (info, now + self.ttl));
    }

    /// The caller a live token names, renewing it; an unknown or expired token fails.
    pub fn info(&mut self, token: &str, now: Duration) -> Result<AuthInfo> {
        match self.tokens.get_mut(token) {
            Some((info, expiry)) if *expiry > now => {
                *expiry = now + self.ttl;
                Ok(info.clone())
            }
            Some(_) => {
                self.tokens.remove(token);
                Err(Error::InvalidAuthToken)
            }
            None => Err(Error::InvalidAuthToken),
        }
    }

    /// Drops the tokens of a deleted user or changed password.
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, (info, _)| info.user != user);
    }
}
