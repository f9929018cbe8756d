//! The address a request came from, for the limits keyed by it. Behind a reverse proxy or an
//! ingress controller every connection comes from the proxy, so every anonymous caller would
//! share one bucket and one flood would shut everyone out: the proxies named in
//! `[limits] trusted_proxies` are believed about the address they were sent from
//! (`X-Forwarded-For`), and nobody else is.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client's address: the connection's, unless it is a trusted proxy, in which case the
/// nearest address in `X-Forwarded-For` (read from the right: each proxy appends the address
/// it was sent from) that is not itself a trusted proxy. A caller can put anything at the left
/// of the header, so nothing left of the first untrusted address is read; an entry that is not
/// an address ends the walk at the proxy that passed it on.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = canonical(peer);
    if !is_trusted(&client) {
        return client;
    }
    let entries = forwarded_for
        .iter()
        .rev()
        .flat_map(|header| header.rsplit(','));
    for entry in entries {
        let Some(hop) = parse_hop(entry.trim()) else {
            return client;
        };
        client = canonical(hop);
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// Whether a request may read `GET /metrics`: a direct connection (no proxy put an
/// `X-Forwarded-For` on it) from one of the scrapers' ranges, and never from a trusted proxy
/// (whose requests are the public's, whether or not it adds the header: an L4 or passthrough
/// proxy does not). Through the ingress it never is.
pub fn may_scrape(peer: IpAddr, forwarded: bool, scrapers: &[IpNet], proxies: &[IpNet]) -> bool {
    let peer = canonical(peer);
    let within = |nets: &[IpNet]| nets.iter().any(|net| net.contains(&peer));
    !forwarded && within(scrapers) && !within(proxies)
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[v6]:port`, `v4:port`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

/// An IPv4 address reached over an IPv6 socket (`::ffff:a.b.c.d`) as the IPv4 address, so one
/// caller has one key and `10.0.0.0/8` covers it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let got = client_address(ip("203.0.113.9"), &["198.51.100.1"], &[]);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn a_caller_that_is_not_a_proxy_cannot_choose_its_address() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("203.0.113.9"), &["10.1.1.1, 198.51.100.1"], &trusted);
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_address_it_was_sent_from_counts() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("10.0.0.5"), &["198.51.100.7"], &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn what_a_caller_writes_before_the_proxy_appends_is_not_believed() {
        // The caller sent "X-Forwarded-For: 192.0.2.1"; the proxy appended the real address.
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("10.0.0.5"), &["192.0.2.1, 198.51.100.7"], &trusted);
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_is_walked_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "fd00::/8"]);
        let got = client_address(
            ip("10.0.0.5"),
            &["192.0.2.1, 198.51.100.7", "fd00::3, 10.2.0.1"],
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn a_garbled_entry_ends_the_walk_at_the_proxy_that_passed_it() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("10.0.0.5"), &["198.51.100.7, not-an-address"], &trusted);
        assert_eq!(got, ip("10.0.0.5"));
        let got = client_address(
            ip("10.0.0.5"),
            &["198.51.100.7, 10.0.0.9, unknown"],
            &trusted,
        );
        assert_eq!(got, ip("10.0.0.5"));
    }

    #[test]
    fn ports_and_mapped_addresses_are_one_caller() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.5"), &["198.51.100.7:4711"], &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.0.0.5"), &["[2001:db8::1]:443"], &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            client_address(ip("::ffff:203.0.113.9"), &[], &[]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn metrics_are_read_only_by_a_scraper_connecting_directly() {
        let scrapers = nets(&["127.0.0.0/8", "10.244.0.0/16"]);
        assert!(may_scrape(ip("127.0.0.1"), false, &scrapers, &[]));
        assert!(may_scrape(ip("::ffff:10.244.3.4"), false, &scrapers, &[]));
        assert!(
            !may_scrape(ip("10.244.3.4"), true, &scrapers, &[]),
            "through the ingress"
        );
        assert!(!may_scrape(ip("203.0.113.9"), false, &scrapers, &[]));
        assert!(!may_scrape(ip("127.0.0.1"), false, &[], &[]));
        let proxies = nets(&["10.244.7.0/24"]);
        assert!(
            !may_scrape(ip("10.244.7.3"), false, &scrapers, &proxies),
            "a proxy that adds no header is still a proxy"
        );
        assert!(may_scrape(ip("10.244.3.4"), false, &scrapers, &proxies));
    }

    #[test]
    fn only_proxies_in_the_header_is_the_farthest_proxy() {
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_address(ip("10.0.0.5"), &["10.9.9.9"], &trusted);
        assert_eq!(got, ip("10.9.9.9"));
        assert_eq!(
            client_address(ip("10.0.0.5"), &[], &trusted),
            ip("10.0.0.5")
        );
    }
}
