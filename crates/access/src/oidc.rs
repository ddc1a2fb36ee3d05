//! OpenID Connect: bearer ID tokens from an identity provider. The provider is found through its discovery
//! document; its signing keys come from its JWKS and are fetched again when a token names a key not seen
//! yet (key rotation), at most every ten seconds. A token is accepted only with a known key's valid RS256 or
//! ES256 signature, this provider as issuer, this server's audience, and times within the allowed clock
//! skew. The user it names is created on first sign-in (never an existing local account), and the groups
//! claim maps to roles at each sign-in.

use crate::principal::Principal;
use crate::service::{Access, AuthError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest token accepted.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long a verified token's caller is remembered (grants changed elsewhere apply after this).
const REMEMBER: Duration = Duration::from_secs(5);
/// Largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Settings.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's issuer URL, exactly as its tokens name it.
    pub issuer: String,
    /// The audience tokens must be issued for (this server's client id).
    pub audience: String,
    /// The claim that names the user (`preferred_username`, `email`, `sub`).
    pub username_claim: String,
    /// The claim listing the user's groups.
    pub groups_claim: String,
    /// Group to role: members of the group hold the role.
    pub group_roles: Vec<(String, String)>,
    /// Tolerated clock difference with the provider.
    pub clock_skew: Duration,
    /// Least time between two fetches of the provider's keys.
    pub refetch_interval: Duration,
}

enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
}

#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Arc<Key>>,
    fetched: Option<Instant>,
    jwks_uri: Option<String>,
}

/// Verifies ID tokens of one provider.
pub struct OidcVerifier {
    settings: OidcSettings,
    access: Arc<Access>,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Keys>,
    remembered: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

fn rejected(reason: &str) -> AuthError {
    tracing::info!(reason, "an OIDC token was refused");
    AuthError::Rejected
}

fn b64(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| rejected("not base64url"))
}

impl OidcVerifier {
    /// A verifier; nothing is fetched until the first token arrives.
    pub fn new(settings: OidcSettings, access: Arc<Access>) -> Result<Arc<OidcVerifier>, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot create an HTTP client for OIDC: {e}"))?;
        Ok(Arc::new(OidcVerifier {
            settings,
            access,
            http,
            keys: tokio::sync::Mutex::new(Keys::default()),
            remembered: Mutex::new(HashMap::new()),
        }))
    }

    async fn document(&self, url: &str) -> Result<Value, AuthError> {
        let response = self.http.get(url).send().await.map_err(|error| {
            tracing::warn!(%error, url, "the OIDC provider could not be reached");
            AuthError::Rejected
        })?;
        if !response.status().is_success() {
            tracing::warn!(status = response.status().as_u16(), url, "the OIDC provider refused");
            return Err(AuthError::Rejected);
        }
        let bytes = response.bytes().await.map_err(|_| AuthError::Rejected)?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(rejected("provider document too large"));
        }
        serde_json::from_slice(&bytes).map_err(|_| rejected("provider document is not JSON"))
    }

    /// The key a token names, fetching the JWKS (again) when it is not known.
    async fn key(&self, kid: Option<&str>) -> Result<Arc<Key>, AuthError> {
        let mut keys = self.keys.lock().await;
        let find = |keys: &Keys| match kid {
            Some(kid) => keys.by_id.get(kid).cloned(),
            None if keys.by_id.len() == 1 => keys.by_id.values().next().cloned(),
            None => None,
        };
        if let Some(key) = find(&keys) {
            return Ok(key);
        }
        if keys
            .fetched
            .is_some_and(|at| at.elapsed() < self.settings.refetch_interval)
        {
            return Err(rejected("unknown signing key"));
        }
        keys.fetched = Some(Instant::now());
        if keys.jwks_uri.is_none() {
            let discovery = self
                .document(&format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                ))
                .await?;
            if discovery["issuer"].as_str() != Some(self.settings.issuer.as_str()) {
                return Err(rejected("the discovery document names another issuer"));
            }
            keys.jwks_uri = discovery["jwks_uri"].as_str().map(str::to_string);
        }
        let jwks_uri = keys.jwks_uri.clone().ok_or_else(|| rejected("no jwks_uri"))?;
        let jwks = self.document(&jwks_uri).await?;
        keys.by_id = parse_jwks(&jwks);
        find(&keys).ok_or_else(|| rejected("unknown signing key"))
    }

    /// The caller an ID token stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(rejected("token too long"));
        }
        let fingerprint: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.access.changed().await? {
            self.remembered.lock().expect("oidc cache").clear();
        }
        if let Some((principal, until)) = self.remembered.lock().expect("oidc cache").get(&fingerprint)
            && Instant::now() < *until
        {
            return Ok(principal.clone());
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(rejected("not a JWT"));
        };
        let header: Value = serde_json::from_slice(&b64(header)?).map_err(|_| rejected("bad header"))?;
        let claims: Value = serde_json::from_slice(&b64(payload)?).map_err(|_| rejected("bad claims"))?;
        let signature = b64(signature)?;
        let algorithm = header["alg"].as_str().unwrap_or_default();
        let key = self.key(header["kid"].as_str()).await?;
        let signed = &token[..token.rfind('.').expect("three parts")];
        let valid = match (algorithm, key.as_ref()) {
            ("RS256", Key::Rsa { n, e }) => ring::signature::RsaPublicKeyComponents { n, e }
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    signed.as_bytes(),
                    &signature,
                )
                .is_ok(),
            ("ES256", Key::P256 { point }) => {
                ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed.as_bytes(), &signature)
                    .is_ok()
            }
            _ => false,
        };
        if !valid {
            return Err(rejected("bad signature or algorithm"));
        }
        let expires = self.check_claims(&claims)?;
        let username = claims[self.settings.username_claim.as_str()]
            .as_str()
            .filter(|name| !name.is_empty())
            .ok_or_else(|| rejected("no user name claim"))?;
        let groups: Vec<&str> = match &claims[self.settings.groups_claim.as_str()] {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(one) => vec![one.as_str()],
            _ => Vec::new(),
        };
        let roles: Vec<String> = self
            .settings
            .group_roles
            .iter()
            .filter(|(group, _)| groups.contains(&group.as_str()))
            .map(|(_, role)| role.clone())
            .collect();
        let Some(user) = self.access.external_user(username, "oidc").await? else {
            tracing::warn!(username, "an OIDC sign-in names a local account; refused");
            return Err(AuthError::Rejected);
        };
        let principal = self.access.principal_with_roles(user, &roles).await?;
        let until = Instant::now() + REMEMBER.min(expires);
        let mut remembered = self.remembered.lock().expect("oidc cache");
        if remembered.len() >= 10_000 {
            remembered.clear();
        }
        remembered.insert(fingerprint, (principal.clone(), until));
        Ok(principal)
    }

    /// Checks issuer, audience and times; returns how long the token stays valid.
    fn check_claims(&self, claims: &Value) -> Result<Duration, AuthError> {
        if claims["iss"].as_str() != Some(self.settings.issuer.as_str()) {
            return Err(rejected("wrong issuer"));
        }
        let audience_matches = match &claims["aud"] {
            Value::String(one) => *one == self.settings.audience,
            Value::Array(many) => many
                .iter()
                .any(|item| item.as_str() == Some(self.settings.audience.as_str())),
            _ => false,
        };
        if !audience_matches {
            return Err(rejected("wrong audience"));
        }
        let now = loopline_core::time::now_millis() / 1000;
        let skew = i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(i64::MAX);
        let exp = claims["exp"].as_i64().ok_or_else(|| rejected("no expiry"))?;
        if exp.saturating_add(skew) <= now {
            return Err(rejected("expired"));
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf.saturating_sub(skew) > now) {
            return Err(rejected("not valid yet"));
        }
        if claims["iat"].as_i64().is_some_and(|iat| iat.saturating_sub(skew) > now) {
            return Err(rejected("issued in the future"));
        }
        Ok(Duration::from_secs(
            u64::try_from(exp.saturating_add(skew) - now).unwrap_or(0),
        ))
    }
}

fn parse_jwks(jwks: &Value) -> HashMap<String, Arc<Key>> {
    let mut keys = HashMap::new();
    for (index, jwk) in jwks["keys"].as_array().into_iter().flatten().take(100).enumerate() {
        if jwk["use"].as_str().is_some_and(|usage| usage != "sig") {
            continue;
        }
        let decode = |name: &str| jwk[name].as_str().and_then(|text| URL_SAFE_NO_PAD.decode(text).ok());
        let key = match jwk["kty"].as_str() {
            Some("RSA") => match (decode("n"), decode("e")) {
                (Some(n), Some(e)) => Key::Rsa { n, e },
                _ => continue,
            },
            Some("EC") if jwk["crv"].as_str() == Some("P-256") => match (decode("x"), decode("y")) {
                (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                    let mut point = vec![4u8];
                    point.extend(x);
                    point.extend(y);
                    Key::P256 { point }
                }
                _ => continue,
            },
            _ => continue,
        };
        let kid = jwk["kid"].as_str().map_or_else(|| format!("#{index}"), str::to_string);
        keys.insert(kid, Arc::new(key));
    }
    keys
}
