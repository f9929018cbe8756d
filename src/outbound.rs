//! Every HTTP request the gateway makes goes through here: a client that never follows
//! redirects and gives up after a time limit, answers read only up to a bound, remote text
//! cleaned before it is kept, and, for URLs that come from outside (a registered client's JWKS
//! URL), an address policy against server-side request forgery.
//!
//! Two kinds of destination:
//! - **Supplied from outside** ([`guarded_client`]): a client system's vendor chose the URL and
//!   controls its DNS. The URL must parse, name no credentials, and reach only public addresses
//!   unless the deployment allows more (`[outbound] allow_non_public`). The check is made on the
//!   URL's literal address and again on every address its name resolves to, by the resolver the
//!   connection uses, so a name cannot be re-pointed between the check and the connection. No
//!   proxy is used: a proxy would make the connection's real destination invisible to the check.
//! - **Configured by the operator** ([`client`]): the practice directory's FHIR endpoints and
//!   token URLs, the MESH mailbox. They may rightly be on private networks (HSCN), so the address
//!   policy does not apply; but a redirect is still never followed (a `307` would otherwise
//!   re-send a letter, with the person's details, wherever the answer pointed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// Address ranges other than the public Internet that a deployment may open to fetches of
/// URLs supplied from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressClass {
    /// 127.0.0.0/8 and ::1: this host (tests run their JWKS servers here).
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade NAT), fc00::/7, the deprecated
    /// site-local fec0::/10, and local-use NAT64 64:ff9b:1::/48 (which translates to whatever
    /// IPv4 addresses the local network chose).
    Private,
    /// 169.254/16 and fe80::/10, which hold cloud metadata services.
    LinkLocal,
}

/// How an address is reached, judged by where a connection to it really goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// A public address.
    Public,
    /// One of the non-public classes a deployment may open.
    NonPublic(AddressClass),
    /// Never, whatever is allowed: the address names no single host (0.0.0.0 reaches this host
    /// on Linux), or many (multicast, broadcast), or none on a real network (documentation,
    /// benchmarking, protocol-assignment ranges), or hides where it goes (Teredo, the
    /// deprecated IPv4-compatible form).
    Never,
}

/// Where a connection to `ip` goes.
fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => embedded_v4(v6).map_or_else(|| reach_v6(v6), reach_v4),
    }
}

fn reach_v4(v4: Ipv4Addr) -> Reach {
    let [a, b, c, _] = v4.octets();
    let never = v4.is_unspecified()
        || a == 0
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a >= 240
        // 192.0.0.0/24: IETF protocol assignments (DS-Lite, NAT64 discovery, ...).
        || (a, b, c) == (192, 0, 0)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (b & 0xfe) == 18);
    if never {
        Reach::Never
    } else if v4.is_loopback() {
        Reach::NonPublic(AddressClass::Loopback)
    } else if v4.is_private() || (a == 100 && (64..128).contains(&b)) {
        Reach::NonPublic(AddressClass::Private)
    } else if v4.is_link_local() {
        Reach::NonPublic(AddressClass::LinkLocal)
    } else {
        Reach::Public
    }
}

/// An IPv6 address that carries no IPv4 address [`embedded_v4`] unwraps.
fn reach_v6(v6: Ipv6Addr) -> Reach {
    let s = v6.segments();
    // ::a.b.c.d (IPv4-compatible, deprecated by RFC 4291: no public host is reached so) and
    // Teredo 2001::/32 (a tunnel whose IPv4 ends are hidden in the address and reached
    // through whatever relay routes it).
    let hides_destination = s[..6] == [0; 6] || s[..2] == [0x2001, 0];
    // Documentation 2001:db8::/32, benchmarking 2001:2::/48, discard-only 100::/64.
    let reaches_no_host =
        s[..2] == [0x2001, 0xdb8] || s[..3] == [0x2001, 2, 0] || s[..4] == [0x100, 0, 0, 0];
    if v6.is_loopback() {
        Reach::NonPublic(AddressClass::Loopback)
    } else if v6.is_unspecified() || v6.is_multicast() || hides_destination || reaches_no_host {
        Reach::Never
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 || s[..3] == [0x64, 0xff9b, 1] {
        Reach::NonPublic(AddressClass::Private)
    } else if s[0] & 0xffc0 == 0xfe80 {
        Reach::NonPublic(AddressClass::LinkLocal)
    } else {
        Reach::Public
    }
}

/// The IPv4 address a connection to this IPv6 address reaches: IPv4-mapped
/// (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::/48`, whose
/// relay delivers to `A.B.C.D`). Each is judged as that IPv4 address, never-reachable ranges
/// included.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let from = |high: u16, low: u16| Ipv4Addr::from(((high as u32) << 16) | low as u32);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(from(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(from(s[1], s[2]))
    } else {
        None
    }
}

/// Which addresses fetches of URLs supplied from outside may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<AddressClass>,
}

impl AddressPolicy {
    /// Public addresses, and those of the `allowed` classes.
    pub fn allowing(allowed: &[AddressClass]) -> Self {
        Self {
            allowed: allowed.to_vec(),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        match reach(ip) {
            Reach::Public => true,
            Reach::NonPublic(class) => self.allowed.contains(&class),
            Reach::Never => false,
        }
    }
}

/// Why a URL supplied from outside is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    #[error("it is not a URL")]
    NotAUrl,
    #[error("it must be https (http only to a loopback address, for testing)")]
    Scheme,
    #[error("it must not carry a user name or password")]
    Credentials,
    #[error("it must name a host")]
    NoHost,
    #[error("its address is not one the gateway may reach")]
    Address,
}

/// Parses a URL supplied from outside and checks what can be checked without resolving it:
/// https (or http to a loopback host, for testing), no credentials, and, when the host is an
/// address, that the policy permits it. The host is judged as the URL parser reads it, so
/// `http://127.0.0.1.evil.example/` is the host `127.0.0.1.evil.example` and
/// `http://localhost@evil.example/` is `evil.example` with a user name.
pub fn checked_url(text: &str, policy: &AddressPolicy) -> Result<url::Url, UrlRefusal> {
    let url = parsed_url(text)?;
    if let Some(ip) = literal_address(&url)
        && !policy.permits(ip)
    {
        return Err(UrlRefusal::Address);
    }
    Ok(url)
}

/// The same rules without the address policy: what registering a URL needs (the policy is the
/// deployment's and is applied at every fetch).
pub fn parsed_url(text: &str) -> Result<url::Url, UrlRefusal> {
    let url = url::Url::parse(text).map_err(|_| UrlRefusal::NotAUrl)?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(UrlRefusal::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let host = url.host().ok_or(UrlRefusal::NoHost)?;
    let loopback = match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(v4) => reach_v4(v4) == Reach::NonPublic(AddressClass::Loopback),
        url::Host::Ipv6(v6) => reach(IpAddr::V6(v6)) == Reach::NonPublic(AddressClass::Loopback),
    };
    if url.scheme() == "http" && !loopback {
        return Err(UrlRefusal::Scheme);
    }
    Ok(url)
}

fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// The resolver a name that resolved only to refused addresses fails with.
#[derive(Debug, thiserror::Error)]
#[error("the name resolves to no address the gateway may reach")]
pub struct AddressRefused;

/// Resolves names with the system resolver and keeps only the addresses the policy permits, so
/// the connection can only be made to a checked address.
struct GuardedResolver {
    policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let permitted: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The builder every outbound client starts from: no redirects followed (a redirect is an
/// answer like any other, for the caller to refuse), a connect timeout and an overall timeout.
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
}

/// A client for operator-configured destinations.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).build()
}

/// A client for URLs supplied from outside: [`builder`], no proxy, and only the addresses
/// `policy` permits (check the URL itself with [`checked_url`] first: literal addresses are not
/// resolved).
pub fn guarded_client(
    policy: &AddressPolicy,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout)
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .build()
}

/// Whether a request failed because the resolver refused every address of the name.
pub fn refused_by_policy(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<AddressRefused>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer could not be read: {0}")]
    Read(#[from] reqwest::Error),
}

/// Reads an answer's body, chunk by chunk, stopping (and dropping the connection) as soon as it
/// passes `limit` bytes; an answer that declares a larger length is refused before any is read.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether what is sent to `url` stays private on the way: https, or plain http only to this
/// host (`localhost` or a loopback address), where nothing travels over a network.
pub fn private_in_transit(url: &url::Url) -> bool {
    url.scheme() == "https" || (url.scheme() == "http" && on_this_host(url))
}

/// Whether `url` names this host: a loopback address, or `localhost`.
pub fn on_this_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Why an OAuth2 or OpenID Connect endpoint's answer never reached the protocol.
#[derive(Debug, thiserror::Error)]
pub enum OAuthFetchError {
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    #[error("the token endpoint answered with a redirect (HTTP {0}), which is not followed")]
    Redirect(u16),
    #[error("the token endpoint's answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// The future an [`oauth_http`] call gives.
pub type OAuthFuture = std::pin::Pin<
    Box<dyn Future<Output = Result<oauth2::HttpResponse, OAuthFetchError>> + Send + 'static>,
>;

/// The `oauth2` crate's HTTP client over one of ours: each request within `timeout`, a
/// redirect refused rather than followed, the answer read up to `max_bytes`. Used for the
/// practice directory's client-credentials tokens and for people's sign-in alike.
pub fn oauth_http(
    http: reqwest::Client,
    timeout: Duration,
    max_bytes: usize,
) -> impl Fn(oauth2::HttpRequest) -> OAuthFuture {
    move |request: oauth2::HttpRequest| -> OAuthFuture {
        let http = http.clone();
        Box::pin(async move {
            let mut request = reqwest::Request::try_from(request)?;
            *request.timeout_mut() = Some(timeout);
            let response = http.execute(request).await?;
            if response.status().is_redirection() {
                return Err(OAuthFetchError::Redirect(response.status().as_u16()));
            }
            let mut built = oauth2::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                built = built.header(name, value);
            }
            let body = read_bounded(response, max_bytes)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge(limit) => OAuthFetchError::TooLarge(limit),
                    BodyError::Read(e) => OAuthFetchError::Http(e),
                })?;
            Ok(built.body(body).unwrap_or_default())
        })
    }
}

/// Text from a remote system made fit to keep and show: control characters (line breaks,
/// terminal escapes) become spaces, runs of spaces one, and at most `max_chars` characters
/// remain. Never for logs: remote text can name a person.
pub fn cleaned_remote_text(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut kept = 0;
    let mut last_space = true;
    for c in text.chars() {
        if kept == max_chars {
            out.push('…');
            break;
        }
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        kept += 1;
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_by_default() {
        let none = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "fe80::1",
            "fd00::1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!none.permits(ip(refused)), "{refused}");
        }
        for public in ["81.144.1.1", "2a00:1450::1", "172.32.0.1", "100.128.0.1"] {
            assert!(none.permits(ip(public)), "{public}");
        }
    }

    /// Special-purpose ranges that reach no public host, each refused by default; those that
    /// name no single host, or none, stay refused whatever the deployment allows.
    #[test]
    fn special_purpose_ranges_are_refused() {
        let none = AddressPolicy::default();
        let all = AddressPolicy::allowing(&[
            AddressClass::Loopback,
            AddressClass::Private,
            AddressClass::LinkLocal,
        ]);
        for (range, addresses) in [
            (
                "192.0.0.0/24 (IETF protocol assignments)",
                &["192.0.0.1", "192.0.0.170", "192.0.0.255"][..],
            ),
            (
                "198.18.0.0/15 (benchmarking)",
                &["198.18.0.1", "198.19.255.254"],
            ),
            (
                "Teredo 2001::/32",
                &["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"],
            ),
            (
                "IPv4-compatible ::a.b.c.d",
                &["::8.8.8.8", "::127.0.0.1", "::10.0.0.1"],
            ),
            ("2001:db8::/32 (documentation)", &["2001:db8::1"]),
            ("2001:2::/48 (benchmarking)", &["2001:2::1"]),
            ("100::/64 (discard)", &["100::1"]),
            (
                "IPv4-mapped 0.0.0.0/8",
                &["::ffff:0.0.0.0", "::ffff:0.1.2.3"],
            ),
            (
                "IPv4-mapped documentation",
                &["::ffff:192.0.2.1", "64:ff9b::cb00:7101"],
            ),
            ("6to4 of 0.0.0.0", &["2002::1", "2002:0:0::1"]),
            ("6to4 of a broadcast address", &["2002:ffff:ffff::1"]),
        ] {
            for a in addresses {
                assert!(!none.permits(ip(a)), "{range}: {a} by default");
                assert!(!all.permits(ip(a)), "{range}: {a} whatever is allowed");
            }
        }
        for (range, addresses, class) in [
            (
                "fec0::/10 (site-local)",
                &["fec0::1", "feff::1"][..],
                AddressClass::Private,
            ),
            (
                "64:ff9b:1::/48 (local-use NAT64)",
                &["64:ff9b:1::a00:1", "64:ff9b:1:ffff::1"],
                AddressClass::Private,
            ),
            (
                "6to4 of 127.0.0.1",
                &["2002:7f00:1::1"],
                AddressClass::Loopback,
            ),
            (
                "6to4 of 10.0.0.1",
                &["2002:a00:1::1"],
                AddressClass::Private,
            ),
            (
                "6to4 of 192.168.1.1",
                &["2002:c0a8:101::"],
                AddressClass::Private,
            ),
            (
                "6to4 of 169.254.169.254",
                &["2002:a9fe:a9fe::1"],
                AddressClass::LinkLocal,
            ),
        ] {
            for a in addresses {
                assert!(!none.permits(ip(a)), "{range}: {a} by default");
                assert!(
                    AddressPolicy::allowing(&[class]).permits(ip(a)),
                    "{range}: {a} is {class:?}"
                );
            }
        }
        for public in [
            "2002:5190:101::1",
            "64:ff9b::5190:101",
            "192.0.1.1",
            "198.17.255.1",
            "198.20.0.1",
            "2001:4860:4860::8888",
        ] {
            assert!(none.permits(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn a_deployment_opens_exactly_the_classes_it_names() {
        let loopback = AddressPolicy::allowing(&[AddressClass::Loopback]);
        assert!(loopback.permits(ip("127.0.0.1")) && loopback.permits(ip("::1")));
        assert!(loopback.permits(ip("::ffff:127.0.0.1")));
        assert!(!loopback.permits(ip("10.0.0.1")) && !loopback.permits(ip("169.254.169.254")));
        assert!(
            !loopback.permits(ip("0.0.0.0")),
            "never the unspecified address"
        );
        let all = AddressPolicy::allowing(&[
            AddressClass::Loopback,
            AddressClass::Private,
            AddressClass::LinkLocal,
        ]);
        assert!(all.permits(ip("10.0.0.1")) && all.permits(ip("fe80::1")));
        assert!(!all.permits(ip("::")) && !all.permits(ip("224.0.0.1")));
    }

    #[test]
    fn urls_are_judged_as_parsed_not_as_strings() {
        let none = AddressPolicy::default();
        let loopback = AddressPolicy::allowing(&[AddressClass::Loopback]);
        assert_eq!(
            checked_url("http://127.0.0.1.evil.example/jwks", &loopback),
            Err(UrlRefusal::Scheme),
            "a domain that starts with an address is not loopback"
        );
        assert_eq!(
            checked_url("http://localhost@evil.example/jwks", &loopback),
            Err(UrlRefusal::Credentials)
        );
        assert_eq!(
            checked_url("https://user:pw@gp-supplier.example/jwks", &none),
            Err(UrlRefusal::Credentials)
        );
        assert_eq!(
            checked_url("http://127.0.0.1:9/jwks", &none),
            Err(UrlRefusal::Address)
        );
        assert!(checked_url("http://127.0.0.1:9/jwks", &loopback).is_ok());
        assert!(checked_url("http://[::1]:9/jwks", &loopback).is_ok());
        assert!(checked_url("http://localhost:9/jwks", &loopback).is_ok());
        assert_eq!(
            checked_url("https://169.254.169.254/latest/meta-data", &loopback),
            Err(UrlRefusal::Address)
        );
        assert_eq!(
            checked_url("https://0x7f000001/", &none),
            Err(UrlRefusal::Address),
            "the parser reads other spellings of an address as the address"
        );
        assert_eq!(
            checked_url("http://gp-supplier.example/jwks", &none),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(
            checked_url("file:///etc/passwd", &none),
            Err(UrlRefusal::Scheme)
        );
        assert_eq!(checked_url("jwks", &none), Err(UrlRefusal::NotAUrl));
        assert!(checked_url("https://gp-supplier.example/jwks", &none).is_ok());
    }

    #[test]
    fn remote_text_is_one_bounded_line() {
        assert_eq!(
            cleaned_remote_text("bad\r\nINFO forged line\u{1b}[31m  red\t", 100),
            "bad INFO forged line [31m red"
        );
        assert_eq!(cleaned_remote_text("abcdef", 3), "abc…");
        assert_eq!(cleaned_remote_text("", 3), "");
    }
}
