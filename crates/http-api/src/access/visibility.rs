//! What a caller may see in a listing. Searches show only what the caller may read: experiment-scoped
//! searches (runs, traces, logged models) are narrowed to readable experiments before they run, and searches
//! of experiments, models, versions and datasets are filled page by page from readable items, with page tokens
//! of their own, so neither a count nor a token says that something unreadable exists.
//!
//! Callers who can read every resource of a kind (admins, and everyone when the default level or a `*` grant
//! gives READ and no grant takes it away) take the plain path: no extra work.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use loopline_access::{Level, Principal};
use loopline_metadata_store::{Page, PageRequest};
use std::convert::Infallible;
use std::future::Future;

/// Most underlying pages one filtered page reads (a caller who may see little among very many items gets a
/// short page and a token to go on).
const MAX_UNDERLYING_PAGES: usize = 100;
/// Tokens of filtered pages begin with this.
const TOKEN_PREFIX: &str = "v.";

/// The key filtered page tokens are sealed with (shared by every replica through the store): a token says
/// nothing of how many items the caller could not see.
#[derive(Clone)]
pub struct PageKey(pub std::sync::Arc<ring::aead::LessSafeKey>);

impl PageKey {
    /// A key from 32 bytes.
    pub fn new(bytes: &[u8; 32]) -> PageKey {
        let key =
            ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, bytes).expect("32 bytes is the key length");
        PageKey(std::sync::Arc::new(ring::aead::LessSafeKey::new(key)))
    }

    /// `plain` sealed (ChaCha20-Poly1305, random nonce) for one purpose, as base64url text: what is sealed
    /// for one purpose (a sign-in, a session) never opens for another, nor as a page token.
    pub fn seal(&self, purpose: &'static [u8], mut plain: Vec<u8>) -> String {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        self.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(purpose),
                &mut plain,
            )
            .expect("sealing a short value cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend(plain);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// What `seal` sealed for `purpose`; `None` for anything else (forged, altered, another purpose, or
    /// longer than `limit` characters).
    pub fn open(&self, purpose: &'static [u8], text: &str, limit: usize) -> Option<Vec<u8>> {
        if text.len() > limit {
            return None;
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&bytes[..12]);
        let opened = self
            .0
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(purpose),
                &mut bytes[12..],
            )
            .ok()?;
        Some(opened.to_vec())
    }
}

/// The caller of a listing (`None` inside: auth is off).
#[derive(Clone, Default)]
pub struct Viewer(Option<Principal>, Option<PageKey>);

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Viewer(
            parts.extensions.get::<Principal>().cloned(),
            parts.extensions.get::<PageKey>().cloned(),
        ))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    /// The underlying page's token.
    t: Option<String>,
    /// Items of it already returned or skipped.
    s: usize,
    /// The underlying page size.
    n: u64,
}

impl Viewer {
    /// A viewer for a principal.
    pub fn of(principal: Option<Principal>) -> Viewer {
        Viewer(principal, None)
    }

    /// True when the caller may read every resource of the kind.
    pub fn sees_all(&self, kind: &str) -> bool {
        let Some(principal) = &self.0 else {
            return true;
        };
        if principal.is_admin {
            return true;
        }
        principal.level(kind, None) >= Level::Read
            && !principal
                .held
                .iter()
                .filter(|grant| grant.resource_type == kind && grant.pattern != "*")
                .any(|grant| principal.level(kind, Some(&grant.pattern)) < Level::Read)
    }

    /// True when the caller may read one resource.
    pub fn may_read(&self, kind: &str, id: &str) -> bool {
        self.0
            .as_ref()
            .is_none_or(|principal| principal.may(kind, Some(id), Level::Read))
    }

    /// The readable ones among `ids`.
    pub fn narrow(&self, kind: &str, ids: Vec<String>) -> Vec<String> {
        if self.sees_all(kind) {
            return ids;
        }
        ids.into_iter().filter(|id| self.may_read(kind, id)).collect()
    }

    /// A page of readable items: `fetch` reads the underlying listing.
    pub async fn page<T, F, Fut>(
        &self,
        kind: &str,
        id_of: impl Fn(&T) -> String,
        page: PageRequest,
        fetch: F,
    ) -> Result<Page<T>, ApiError>
    where
        F: Fn(PageRequest) -> Fut,
        Fut: Future<Output = Result<Page<T>, ApiError>>,
    {
        if self.sees_all(kind) {
            return fetch(page).await;
        }
        let wanted = page.max_results;
        let mut position = match page.page_token.as_deref().filter(|token| !token.is_empty()) {
            None => Position {
                t: None,
                s: 0,
                n: wanted,
            },
            Some(token) => self.decode(token)?,
        };
        let mut items = Vec::new();
        for _ in 0..MAX_UNDERLYING_PAGES {
            let underlying = fetch(PageRequest {
                max_results: position.n,
                page_token: position.t.clone(),
            })
            .await?;
            let count = underlying.items.len();
            for (index, item) in underlying.items.into_iter().enumerate().skip(position.s) {
                if !self.may_read(kind, &id_of(&item)) {
                    continue;
                }
                if items.len() as u64 == wanted.max(1) {
                    position.s = index;
                    return Ok(Page {
                        items,
                        next_page_token: Some(self.encode(&position)),
                    });
                }
                items.push(item);
            }
            match underlying.next_page_token {
                Some(next) if count > 0 => {
                    position = Position {
                        t: Some(next),
                        s: 0,
                        n: position.n,
                    };
                }
                _ => {
                    return Ok(Page {
                        items,
                        next_page_token: None,
                    });
                }
            }
        }
        Ok(Page {
            items,
            next_page_token: Some(self.encode(&position)),
        })
    }
}

impl Viewer {
    fn encode(&self, position: &Position) -> String {
        let mut body = serde_json::to_vec(position).expect("a position serialises");
        let Some(key) = &self.1 else {
            return format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(body));
        };
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        key.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut body,
            )
            .expect("sealing a short token cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend(body);
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    fn decode(&self, token: &str) -> Result<Position, ApiError> {
        let invalid = || ApiError::invalid("Invalid page token: use the next_page_token of the previous page.");
        let body = token.strip_prefix(TOKEN_PREFIX).ok_or_else(invalid)?;
        if body.len() > 4096 {
            return Err(invalid());
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid())?;
        let plain: &[u8] = match &self.1 {
            None => &bytes,
            Some(key) => {
                if bytes.len() < 12 {
                    return Err(invalid());
                }
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&bytes[..12]);
                let sealed = &mut bytes[12..];
                key.0
                    .open_in_place(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::empty(),
                        sealed,
                    )
                    .map_err(|_| invalid())?
            }
        };
        let position: Position = serde_json::from_slice(plain).map_err(|_| invalid())?;
        if position.n == 0 || position.n > 100_000 || position.s as u64 > position.n {
            return Err(invalid());
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopline_access::level::{Grant, Held};
    use std::sync::Arc;

    fn viewer(grants: &[(&str, &str)], default: Level) -> Viewer {
        Viewer(
            Some(Principal {
                user_id: 2,
                username: "u".into(),
                is_admin: false,
                token_id: None,
                scopes: Arc::from([loopline_access::Scope::All]),
                held: Arc::new(
                    grants
                        .iter()
                        .map(|(pattern, grant)| Held {
                            resource_type: "experiment".into(),
                            pattern: pattern.to_string(),
                            grant: Grant::parse(grant).unwrap(),
                        })
                        .collect(),
                ),
                default_level: default,
            }),
            Some(PageKey::new(&[7; 32])),
        )
    }

    async fn pages(viewer: &Viewer, size: u64) -> Vec<Vec<u32>> {
        let all: Vec<u32> = (0..25).collect();
        let mut token = None;
        let mut pages = Vec::new();
        loop {
            let page = viewer
                .page(
                    "experiment",
                    |item: &u32| item.to_string(),
                    PageRequest {
                        max_results: size,
                        page_token: token.clone(),
                    },
                    |request: PageRequest| {
                        let all = all.clone();
                        async move {
                            let offset =
                                loopline_core::page_token::decode_offset(request.page_token.as_deref()).unwrap();
                            let start = offset as usize;
                            let end = (start + request.max_results as usize).min(all.len());
                            Ok(Page {
                                items: all[start..end].to_vec(),
                                next_page_token: (end < all.len())
                                    .then(|| loopline_core::page_token::encode_offset(end as u64)),
                            })
                        }
                    },
                )
                .await
                .unwrap();
            pages.push(page.items);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return pages,
            }
        }
    }

    #[tokio::test]
    async fn filtered_pages_are_full_and_end_without_a_token_after_the_last_readable_item() {
        let readable = ["1", "4", "5", "9", "13", "17"];
        let grants: Vec<(&str, &str)> = readable.iter().map(|id| (*id, "READ")).collect();
        let viewer = viewer(&grants, Level::NoPermissions);
        assert!(!viewer.sees_all("experiment"));
        assert_eq!(pages(&viewer, 4).await, vec![vec![1, 4, 5, 9], vec![13, 17]]);
        assert_eq!(pages(&viewer, 3).await, vec![vec![1, 4, 5], vec![9, 13, 17]]);
    }

    #[test]
    fn sealed_tokens_reveal_nothing_and_cannot_be_forged() {
        let viewer = viewer(&[], Level::NoPermissions);
        let position = Position {
            t: Some("offset 4".into()),
            s: 2,
            n: 10,
        };
        let token = viewer.encode(&position);
        let opened = viewer.decode(&token).unwrap();
        assert_eq!((opened.t.as_deref(), opened.s, opened.n), (Some("offset 4"), 2, 10));
        let text = String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&token[2..]).unwrap()).to_string();
        assert!(!text.contains("offset"));
        let mut forged = URL_SAFE_NO_PAD.decode(&token[2..]).unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(viewer.decode(&format!("v.{}", URL_SAFE_NO_PAD.encode(forged))).is_err());
    }

    #[tokio::test]
    async fn a_deny_hides_one_item_and_default_readers_see_everything_else() {
        let viewer = viewer(&[("3", "DENY")], Level::Read);
        assert!(!viewer.sees_all("experiment"));
        let seen: Vec<u32> = pages(&viewer, 10).await.concat();
        assert_eq!(seen, (0..25).filter(|n| *n != 3).collect::<Vec<_>>());
        assert!(Viewer::default().sees_all("experiment"));
        assert!(Viewer::default().decode("v.!!!").is_err());
        assert!(Viewer::default().decode("other").is_err());
    }
}
