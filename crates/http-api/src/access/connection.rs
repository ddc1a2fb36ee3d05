//! What the guard keeps per connection (set by the listener, one per accepted connection): the peer's
//! address, written out once for the audit trail, and the caller the connection presented last.
//!
//! A client sends the same `Authorization` header with every request of a keep-alive connection. When a
//! request's header is byte for byte the one this connection's last check accepted, and that check still
//! holds (`Access::holds`: nothing about access changed on this replica since, what it knows is fresh, the
//! token has not expired), the caller is the one found then: no parsing, no cache lookup, no hashing, and the
//! `x-loopline-user` value is the one built then. The header is compared in constant time. Its bytes are
//! kept for as long as the connection lives, as the connection's own read buffer already keeps them.

use axum::http::HeaderValue;
use loopline_access::{Access, Checked, Principal};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A connection's peer and the caller it presented last (cloned into each of its requests).
#[derive(Clone)]
pub struct PeerAddress(Arc<Connection>);

struct Connection {
    address: Arc<str>,
    last: Mutex<Option<Last>>,
}

/// The last accepted check on a connection.
struct Last {
    authorization: Box<[u8]>,
    checked: Checked,
    user: Option<HeaderValue>,
}

impl std::fmt::Debug for PeerAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_tuple("PeerAddress").field(&self.0.address).finish()
    }
}

/// A caller found without waiting, with its `x-loopline-user` value.
pub(super) struct Caller {
    pub(super) principal: Principal,
    pub(super) user: Option<HeaderValue>,
}

/// The `x-loopline-user` value of a caller (`None`: its name cannot be a header value).
pub(super) fn user_header(principal: &Principal) -> Option<HeaderValue> {
    HeaderValue::from_str(&principal.username).ok()
}

impl PeerAddress {
    /// The address of a connection's peer.
    pub fn new(peer: SocketAddr) -> PeerAddress {
        PeerAddress(Arc::new(Connection {
            address: Arc::from(peer.ip().to_string()),
            last: Mutex::new(None),
        }))
    }

    /// The peer's IP address as text.
    pub fn address(&self) -> &Arc<str> {
        &self.0.address
    }

    /// The caller, when `authorization` is what this connection's last accepted check was made on and that
    /// check still holds.
    pub(super) fn again(&self, access: &Access, authorization: &[u8]) -> Option<Caller> {
        let last = self.0.last.lock().ok()?;
        let last = last.as_ref()?;
        if !loopline_access::token::same_bytes(&last.authorization, authorization) || !access.holds(&last.checked) {
            return None;
        }
        Some(Caller {
            principal: last.checked.principal.clone(),
            user: last.user.clone(),
        })
    }

    /// Keeps an accepted check for the connection's next requests (replacing the one kept before).
    pub(super) fn keep(&self, authorization: &[u8], checked: Checked) -> Caller {
        let caller = Caller {
            principal: checked.principal.clone(),
            user: user_header(&checked.principal),
        };
        if let Ok(mut last) = self.0.last.lock() {
            *last = Some(Last {
                authorization: authorization.into(),
                checked,
                user: caller.user.clone(),
            });
        }
        caller
    }
}
