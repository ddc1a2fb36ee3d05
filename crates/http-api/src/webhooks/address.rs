//! Where a webhook may point. As MLflow: https only unless the operator allows more schemes, and only
//! public addresses unless the operator allows private ones (IPv4-mapped, 6to4 and NAT64 addresses are
//! judged by the IPv4 address inside). Never at this server itself, which would make every event a request
//! to its own API. Checked when a webhook is saved and again at each delivery, whose connection then goes
//! to the address that was checked (a name that resolves elsewhere the second time cannot redirect it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};

/// The operator's rules for webhook destinations.
#[derive(Debug, Clone)]
pub struct DestinationPolicy {
    /// URL schemes allowed (lower case). Default: `https`.
    pub allowed_schemes: Vec<String>,
    /// Whether private, loopback and link-local addresses are allowed.
    pub allow_private_addresses: bool,
    /// Where this server listens, once known.
    pub own_addresses: Arc<RwLock<Vec<SocketAddr>>>,
}

impl Default for DestinationPolicy {
    fn default() -> Self {
        DestinationPolicy {
            allowed_schemes: vec!["https".into()],
            allow_private_addresses: false,
            own_addresses: Arc::default(),
        }
    }
}

/// A checked destination: the URL and the address to connect to.
#[derive(Debug, Clone)]
pub struct Destination {
    pub url: reqwest::Url,
    pub host: String,
    pub address: SocketAddr,
}

pub use loopline_core::net::is_public;

impl DestinationPolicy {
    /// Records an address this server listens on.
    pub fn add_own_address(&self, address: SocketAddr) {
        if let Ok(mut addresses) = self.own_addresses.write() {
            addresses.push(address);
        }
    }

    fn is_own(&self, address: SocketAddr) -> bool {
        // 0.0.0.0 and :: reach this machine, and an IPv4-mapped address is the IPv4 address.
        let ip = match address.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let ip = if ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        };
        let address = SocketAddr::new(ip, address.port());
        let Ok(addresses) = self.own_addresses.read() else {
            return false;
        };
        addresses.iter().any(|own| {
            own.port() == address.port()
                && (own.ip() == address.ip()
                    || own.ip().is_unspecified()
                    || (own.ip().is_loopback() && address.ip().is_loopback()))
        })
    }

    /// Checks a URL's form (scheme, host) without resolving it.
    pub fn check_form(&self, url: &str) -> Result<reqwest::Url, String> {
        if url.trim().is_empty() {
            return Err("Webhook URL cannot be empty or just whitespace".into());
        }
        if url.len() > 500 {
            return Err("Webhook URL is longer than 500 characters".into());
        }
        let parsed = reqwest::Url::parse(url).map_err(|error| format!("Invalid webhook URL '{url}': {error}"))?;
        if !self.allowed_schemes.iter().any(|scheme| scheme == parsed.scheme()) {
            return Err(format!(
                "Invalid webhook URL scheme: '{}'. Allowed schemes are: {}.",
                parsed.scheme(),
                self.allowed_schemes.join(", ")
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(format!("Webhook URL '{url}' has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("Webhook URL must not carry credentials: use the webhook's secret to sign deliveries".into());
        }
        Ok(parsed)
    }

    /// Checks a URL and resolves it to the address deliveries connect to.
    pub async fn check(&self, url: &str) -> Result<Destination, String> {
        let parsed = self.check_form(url)?;
        let host = parsed
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|error| format!("Cannot resolve Webhook URL hostname '{host}': {error}"))?
                .collect(),
        };
        let Some(first) = addresses.first().copied() else {
            return Err(format!("Cannot resolve Webhook URL hostname '{host}'"));
        };
        for address in &addresses {
            if self.is_own(*address) {
                return Err(format!(
                    "Webhook URL '{url}' points at this server itself; deliveries would call its own API"
                ));
            }
            if !self.allow_private_addresses && !is_public(address.ip()) {
                return Err(format!(
                    "Webhook URL must not resolve to a non-public IP address. '{host}' resolves to {}.",
                    address.ip()
                ));
            }
        }
        Ok(Destination {
            url: parsed,
            host,
            address: first,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "2002:0a00:0001::",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "64:ff9b:1::a00:1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_scheme_address_and_self() {
        let policy = DestinationPolicy::default();
        assert!(
            policy
                .check("http://8.8.8.8/hook")
                .await
                .unwrap_err()
                .contains("Allowed schemes are: https")
        );
        assert!(policy.check("file:///etc/passwd").await.is_err());
        assert!(
            policy
                .check("https://127.0.0.1/hook")
                .await
                .unwrap_err()
                .contains("non-public")
        );
        assert!(
            policy
                .check("https://user:pw@8.8.8.8/")
                .await
                .unwrap_err()
                .contains("credentials")
        );
        assert_eq!(
            policy.check("https://8.8.8.8:8443/x").await.unwrap().address,
            "8.8.8.8:8443".parse().unwrap()
        );
        let open = DestinationPolicy {
            allowed_schemes: vec!["http".into(), "https".into()],
            allow_private_addresses: true,
            ..Default::default()
        };
        open.add_own_address("127.0.0.1:5000".parse().unwrap());
        assert!(open.check("http://127.0.0.1:5001/hook").await.is_ok());
        for own in [
            "http://localhost:5000/hook",
            "http://0.0.0.0:5000/",
            "http://[::ffff:127.0.0.1]:5000/",
            "http://[::]:5000/",
        ] {
            assert!(
                open.check(own).await.unwrap_err().contains("this server itself"),
                "{own}"
            );
        }
    }
}
