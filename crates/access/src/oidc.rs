//! OpenID Connect: bearer ID tokens from an identity provider. The provider is found through its discovery
//! document; its signing keys come from its JWKS and are fetched again when a token names a key not seen
//! yet (key rotation), at most every ten seconds. A token is accepted only with a known key's valid RS256 or
//! ES256 signature, this provider as issuer, this server's audience, and times within the allowed clock
//! skew. The user it names is created on first sign-in (never an existing local account), and the groups
//! claim maps to roles at each sign-in.
//!
//! Browsers sign in with the authorization-code flow (PKCE, state and nonce): `authorization_url` sends them
//! to the provider, `exchange_code` turns the code they bring back into an ID token, and `verify_sign_in`
//! checks it like a bearer token plus the nonce of that one sign-in.

use crate::principal::Principal;
use crate::remembered::{Lookup, RememberedCallers};
use crate::service::{Access, AuthError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
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
    provider: Option<Provider>,
}

/// What the discovery document says about the provider.
#[derive(Debug, Clone)]
struct Provider {
    jwks_uri: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
}

/// Verifies ID tokens of one provider.
pub struct OidcVerifier {
    settings: OidcSettings,
    access: Arc<Access>,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Keys>,
    remembered: RememberedCallers,
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
            remembered: RememberedCallers::new(REMEMBER),
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
        bounded_json(response).await
    }

    /// The provider's endpoints, from its discovery document (read once).
    async fn provider(&self, keys: &mut Keys) -> Result<Provider, AuthError> {
        if let Some(provider) = &keys.provider {
            return Ok(provider.clone());
        }
        let discovery = self
            .document(&format!(
                "{}/.well-known/openid-configuration",
                self.settings.issuer.trim_end_matches('/')
            ))
            .await?;
        if discovery["issuer"].as_str() != Some(self.settings.issuer.as_str()) {
            return Err(rejected("the discovery document names another issuer"));
        }
        let text = |name: &str| discovery[name].as_str().map(str::to_string);
        let provider = Provider {
            jwks_uri: text("jwks_uri"),
            authorization_endpoint: text("authorization_endpoint"),
            token_endpoint: text("token_endpoint"),
        };
        keys.provider = Some(provider.clone());
        Ok(provider)
    }

    /// Where to send a browser to sign in: the provider's authorization endpoint with this sign-in's
    /// state, nonce and PKCE challenge (S256).
    pub async fn authorization_url(&self, request: &SignInRequest<'_>) -> Result<String, AuthError> {
        let provider = {
            let mut keys = self.keys.lock().await;
            self.provider(&mut keys).await?
        };
        let endpoint = provider
            .authorization_endpoint
            .ok_or_else(|| rejected("the provider names no authorization_endpoint"))?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(request.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.audience)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", request.scopes)
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{endpoint}{separator}{query}"))
    }

    /// Trades the code a browser brought back for the provider's ID token (the token endpoint, with the
    /// PKCE verifier and, for a confidential client, its secret).
    pub async fn exchange_code(
        &self,
        code: &str,
        request: &SignInRequest<'_>,
        client_secret: Option<&str>,
    ) -> Result<String, AuthError> {
        let provider = {
            let mut keys = self.keys.lock().await;
            self.provider(&mut keys).await?
        };
        let endpoint = provider
            .token_endpoint
            .ok_or_else(|| rejected("the provider names no token_endpoint"))?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", request.redirect_uri),
            ("client_id", self.settings.audience.as_str()),
            ("code_verifier", request.verifier),
        ];
        if let Some(secret) = client_secret {
            form.push(("client_secret", secret));
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(&endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(%error, "the OIDC token endpoint could not be reached");
                AuthError::Rejected
            })?;
        if !response.status().is_success() {
            tracing::info!(
                status = response.status().as_u16(),
                "the OIDC token endpoint refused a code"
            );
            return Err(AuthError::Rejected);
        }
        let answer = bounded_json(response).await?;
        answer["id_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| rejected("the token endpoint returned no id_token"))
    }

    /// The caller a browser sign-in's ID token stands for: a bearer token's checks plus this sign-in's
    /// nonce. Also returns the roles the token's groups map to (for the session).
    pub async fn verify_sign_in(&self, token: &str, nonce: &str) -> Result<(Principal, Vec<String>), AuthError> {
        let (principal, roles, _) = self.verify_token(token, Some(nonce)).await?;
        Ok((principal, roles))
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
        let provider = self.provider(&mut keys).await?;
        let jwks_uri = provider.jwks_uri.ok_or_else(|| rejected("no jwks_uri"))?;
        let jwks = self.document(&jwks_uri).await?;
        keys.by_id = parse_jwks(&jwks);
        find(&keys).ok_or_else(|| rejected("unknown signing key"))
    }

    /// The caller an ID token stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(rejected("token too long"));
        }
        let fingerprint = RememberedCallers::fingerprint(token);
        let generation = match self.remembered.lookup(&self.access, &fingerprint).await? {
            Lookup::Known(principal) => return Ok(principal),
            Lookup::Unknown(generation) => generation,
        };
        let (principal, _, expires) = self.verify_token(token, None).await?;
        self.remembered.remember(fingerprint, &principal, generation, expires);
        Ok(principal)
    }

    /// Checks a token's signature and claims (and, for a browser sign-in, its nonce).
    /// Returns the caller, the roles its groups map to, and how long the token is still valid.
    async fn verify_token(
        &self,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<(Principal, Vec<String>, Duration), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(rejected("token too long"));
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
        if let Some(nonce) = nonce
            && !claims["nonce"]
                .as_str()
                .is_some_and(|claimed| crate::token::same_bytes(claimed.as_bytes(), nonce.as_bytes()))
        {
            return Err(rejected("wrong nonce"));
        }
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
        Ok((principal, roles, expires))
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

/// One browser sign-in's parameters.
#[derive(Debug)]
pub struct SignInRequest<'a> {
    /// This server's callback URL, as registered at the provider.
    pub redirect_uri: &'a str,
    /// Scopes asked for (`openid` and the claims wanted).
    pub scopes: &'a str,
    /// Ties the provider's answer to the browser that asked.
    pub state: &'a str,
    /// Ties the ID token to this sign-in.
    pub nonce: &'a str,
    /// The PKCE verifier (its S256 hash is the challenge).
    pub verifier: &'a str,
}

/// Reads a provider's JSON answer, refusing one larger than `MAX_DOCUMENT_BYTES` as it arrives.
async fn bounded_json(mut response: reqwest::Response) -> Result<Value, AuthError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(rejected("provider document too large"));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| AuthError::Rejected)? {
        if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(rejected("provider document too large"));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|_| rejected("provider document is not JSON"))
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
