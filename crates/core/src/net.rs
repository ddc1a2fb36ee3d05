//! Whether an address is on the public internet: what a server that makes requests on its users' behalf
//! (webhooks, the AI gateway's providers) may reach unless its operator allows private networks.
//! IPv4-mapped, 6to4 and NAT64 addresses are judged by the IPv4 address inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn embedded_v4(address: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = address.segments();
    // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    // NAT64: 64:ff9b::/96 carries the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, ..] = address.octets();
    !(address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_broadcast()
        || address.is_documentation()
        || address.is_unspecified()
        || address.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
        || (a == 192 && b == 0 && address.octets()[2] == 0))
}

/// Whether an address is globally routable.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(&v6) {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                // Teredo tunnels (2001::/32) and local-use NAT64 (64:ff9b:1::/48) reach addresses we cannot judge.
                || (first == 0x2001 && v6.segments()[1] == 0)
                || (first == 0x64 && v6.segments()[1] == 0xff9b && v6.segments()[2] == 1)
                // IPv4-compatible (::a.b.c.d) is judged as the IPv4 address, IPv4-translated (::ffff:0:a.b.c.d) refused.
                || (v6.segments()[..6] == [0, 0, 0, 0, 0, 0] && !is_public_v4(Ipv4Addr::from(v6.to_bits() as u32)))
                || v6.segments()[..6] == [0, 0, 0, 0, 0xffff, 0])
        }
    }
}
