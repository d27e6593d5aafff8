//! JWT tokens (`--auth-token jwt,...`), as etcd's JWT provider: a signed token carries the
//! user, the auth revision at issue and an expiry, so any member verifies it without having
//! seen it issued, and it survives restarts. A token from before an auth change carries
//! an old revision and is refused (`revision of auth store is old`); the client
//! re-authenticates.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::{AuthInfo, Error, Result};

/// etcd's JWT token TTL when `ttl=` is not given.
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// etcd's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    /// Seconds since the Unix epoch.
    exp: u64,
}

/// Signs (with a private key) and verifies tokens.
pub struct JwtTokens {
    algorithm: Algorithm,
    /// Without one the member verifies tokens but cannot issue them.
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("signs", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl JwtTokens {
    /// Keys in PEM, for `sign_method` (etcd's names: RS256, ES256, PS256, ... and their 384
    /// and 512 forms).
    pub fn new(
        sign_method: &str,
        public_pem: &[u8],
        private_pem: Option<&[u8]>,
        ttl: Duration,
    ) -> std::result::Result<JwtTokens, String> {
        let algorithm: Algorithm = sign_method
            .parse()
            .map_err(|_| format!("unsupported JWT sign-method {sign_method:?}"))?;
        let (verifying, signing) = match algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                DecodingKey::from_rsa_pem(public_pem),
                private_pem.map(EncodingKey::from_rsa_pem).transpose(),
            ),
            Algorithm::ES256 | Algorithm::ES384 => (
                DecodingKey::from_ec_pem(public_pem),
                private_pem.map(EncodingKey::from_ec_pem).transpose(),
            ),
            Algorithm::EdDSA => (
                DecodingKey::from_ed_pem(public_pem),
                private_pem.map(EncodingKey::from_ed_pem).transpose(),
            ),
            _ => return Err(format!("unsupported JWT sign-method {sign_method:?}")),
        };
        Ok(JwtTokens {
            algorithm,
            verifying: verifying.map_err(|e| format!("JWT pub-key: {e}"))?,
            signing: signing.map_err(|e| format!("JWT priv-key: {e}"))?,
            ttl,
        })
    }

    /// A token for `info`, expiring `ttl` after `now` (since the Unix epoch).
    pub fn sign(&self, info: &AuthInfo, now: Duration) -> Result<String> {
        let key = self.signing.as_ref().ok_or(Error::AuthFailed)?;
        let claims = Claims {
            username: info.user.clone(),
            revision: info.revision,
            exp: (now + self.ttl).as_secs(),
        };
        encode(&Header::new(self.algorithm), &claims, key).map_err(|_| Error::AuthFailed)
    }

    /// The caller a token names, if its signature holds and it has not expired at `now`.
    pub fn verify(&self, token: &str, now: Duration) -> Result<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        // Expiry is checked against the member's clock (simulated under madsim).
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = decode::<Claims>(token, &self.verifying, &validation)
            .map_err(|_| Error::InvalidAuthToken)?
            .claims;
        if claims.exp <= now.as_secs() || claims.username.is_empty() {
            return Err(Error::InvalidAuthToken);
        }
        Ok(AuthInfo {
            user: claims.username,
            revision: claims.revision,
        })
    }
}
