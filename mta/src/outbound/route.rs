//! Where mail for a domain goes (RFC 5321 §5.1): the MX records by preference (equal
//! preferences shuffled), the domain itself when it has no MX (implicit MX), a null MX
//! (RFC 7505) as a permanent failure; or the relay host for everything when one is set.
//! DNS sits behind the small [`Dns`] trait so the rules are unit-tested with a fake resolver;
//! [`HickoryDns`] is the real one. No SMTP here.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use rand::seq::SliceRandom;

/// Addresses tried per delivery attempt at most, over all MX hosts (RFC 5321 §5.1 asks for
/// a configurable limit; Postern's is fixed).
pub const MAX_ADDRESSES: usize = 10;

/// What a DNS question gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist (permanent).
    NoSuchDomain,
    /// The name exists but has no record of that type.
    NoData,
    /// A server failure or a timeout: ask again later.
    Temporary(String),
}

type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// The two questions routing asks.
pub trait Dns: Send + Sync {
    /// MX records: (preference, exchange without the trailing dot; "" for the root).
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>>;
    /// A and AAAA records of a host (IPv6 first).
    fn addresses<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>>;
}

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The host name (the MX exchange or the relay), for logs and the DSN's Remote-MTA.
    pub name: String,
    pub addr: SocketAddr,
}

/// Why no hop can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Bounce now: the enhanced status code (RFC 3463) and a text.
    Permanent(&'static str, String),
    /// Try again later.
    Temporary(String),
}

/// The hops for `domain`, in the order to try them (RFC 5321 §5.1).
pub async fn mx_hops(dns: &dyn Dns, domain: &str, port: u16) -> Result<Vec<Hop>, RouteError> {
    let hosts = match dns.mx(domain).await {
        Ok(records) if records.is_empty() => vec![domain.to_string()],
        Ok(records) => ordered_exchanges(domain, records)?,
        // No MX: the domain itself is the implicit MX (RFC 5321 §5.1).
        Err(DnsError::NoData) => vec![domain.to_string()],
        Err(DnsError::NoSuchDomain) => {
            return Err(RouteError::Permanent(
                "5.1.2",
                format!("domain {domain} does not exist"),
            ));
        }
        Err(DnsError::Temporary(e)) => {
            return Err(RouteError::Temporary(format!(
                "MX lookup for {domain}: {e}"
            )));
        }
    };
    let hops = resolve_hosts(dns, &hosts, port).await;
    match hops {
        Ok(h) if h.is_empty() => Err(RouteError::Temporary(format!(
            "no address for the mail servers of {domain}"
        ))),
        other => other,
    }
}

/// The hops of the relay host (an IP literal or a name).
pub async fn relay_hops(dns: &dyn Dns, host: &str, port: u16) -> Result<Vec<Hop>, RouteError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![Hop {
            name: host.to_string(),
            addr: SocketAddr::new(ip, port),
        }]);
    }
    match resolve_hosts(dns, &[host.to_string()], port).await {
        Ok(h) if h.is_empty() => Err(RouteError::Temporary(format!(
            "relay host {host} has no address"
        ))),
        other => other,
    }
}

/// MX hosts by preference, equal preferences in random order (RFC 5321 §5.1); a null MX
/// (RFC 7505 §3: one record, exchange ".") refuses mail for the domain.
fn ordered_exchanges(
    domain: &str,
    mut records: Vec<(u16, String)>,
) -> Result<Vec<String>, RouteError> {
    if records
        .iter()
        .any(|(_, host)| host.is_empty() || host == ".")
    {
        return Err(RouteError::Permanent(
            "5.1.10",
            format!("domain {domain} accepts no mail (null MX, RFC 7505)"),
        ));
    }
    records.shuffle(&mut rand::rng());
    // A stable sort keeps the shuffled order within one preference.
    records.sort_by_key(|(pref, _)| *pref);
    let mut hosts: Vec<String> = Vec::new();
    for (_, host) in records {
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// Addresses of each host in order, at most [`MAX_ADDRESSES`]. A host whose lookup failed
/// temporarily is skipped; if every lookup failed that way the whole is temporary.
async fn resolve_hosts(dns: &dyn Dns, hosts: &[String], port: u16) -> Result<Vec<Hop>, RouteError> {
    let mut hops = Vec::new();
    let mut failure = None;
    for host in hosts {
        match dns.addresses(host).await {
            Ok(ips) => hops.extend(ips.into_iter().map(|ip| Hop {
                name: host.clone(),
                addr: SocketAddr::new(ip, port),
            })),
            Err(DnsError::Temporary(e)) => failure = Some(format!("lookup of {host}: {e}")),
            Err(_) => {}
        }
        if hops.len() >= MAX_ADDRESSES {
            break;
        }
    }
    hops.truncate(MAX_ADDRESSES);
    match failure {
        Some(e) if hops.is_empty() => Err(RouteError::Temporary(e)),
        _ => Ok(hops),
    }
}

/// The real resolver: the system's, or the configured name servers.
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl HickoryDns {
    pub fn new(nameservers: &[SocketAddr]) -> anyhow::Result<HickoryDns> {
        let provider = TokioRuntimeProvider::default();
        let builder = if nameservers.is_empty() {
            match Resolver::builder(provider.clone()) {
                Ok(b) => b,
                Err(e) => {
                    // A machine without /etc/resolv.conf still serves local mail.
                    tracing::warn!(
                        event = "outbound.no_resolver",
                        error = %e,
                        "cannot read the system's DNS configuration: remote delivery will be deferred"
                    );
                    Resolver::builder_with_config(
                        ResolverConfig::from_name_servers(Vec::new()),
                        provider,
                    )
                }
            }
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        Ok(HickoryDns {
            resolver: builder.build()?,
        })
    }
}

fn dns_error(e: hickory_resolver::net::NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NoSuchDomain
    } else if e.is_no_records_found() {
        DnsError::NoData
    } else {
        DnsError::Temporary(e.to_string())
    }
}

/// The name as a fully qualified one, so no search domain is ever appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Dns for HickoryDns {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .mx_lookup(fqdn(domain))
                .await
                .map_err(dns_error)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => {
                        let host = mx.exchange.to_ascii();
                        Some((mx.preference, host.trim_end_matches('.').to_string()))
                    }
                    _ => None,
                })
                .collect())
        })
    }

    fn addresses<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let name = fqdn(host);
            let v6 = self.resolver.ipv6_lookup(name.as_str()).await;
            let v4 = self.resolver.ipv4_lookup(name.as_str()).await;
            let mut ips = Vec::new();
            let mut error = None;
            for result in [v6, v4] {
                match result {
                    Ok(lookup) => {
                        ips.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                            RData::A(a) => Some(IpAddr::V4(a.0)),
                            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                            _ => None,
                        }))
                    }
                    Err(e) => error = Some(dns_error(e)),
                }
            }
            match error {
                Some(e) if ips.is_empty() => Err(e),
                _ => Ok(ips),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct FakeDns {
        mx: HashMap<String, Result<Vec<(u16, String)>, DnsError>>,
        ips: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
    }

    impl Dns for FakeDns {
        fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>> {
            let r = self
                .mx
                .get(domain)
                .cloned()
                .unwrap_or(Err(DnsError::NoSuchDomain));
            Box::pin(async move { r })
        }
        fn addresses<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
            let r = self
                .ips
                .get(host)
                .cloned()
                .unwrap_or(Err(DnsError::NoSuchDomain));
            Box::pin(async move { r })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn mx_by_preference_equal_ones_shuffled_ipv4_and_ipv6() {
        let mut dns = FakeDns::default();
        dns.mx.insert(
            "d.test".into(),
            Ok(vec![
                (20, "c.d.test".into()),
                (10, "a.d.test".into()),
                (10, "b.d.test".into()),
            ]),
        );
        dns.ips
            .insert("a.d.test".into(), Ok(vec![ip("::1"), ip("127.0.0.1")]));
        dns.ips.insert("b.d.test".into(), Ok(vec![ip("127.0.0.2")]));
        dns.ips.insert("c.d.test".into(), Ok(vec![ip("127.0.0.3")]));
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..64 {
            let hops = block_on(mx_hops(&dns, "d.test", 2525)).unwrap();
            assert_eq!(hops.len(), 4);
            assert_eq!(hops[3].name, "c.d.test", "preference 20 comes last");
            assert_eq!(hops[3].addr, "127.0.0.3:2525".parse().unwrap());
            firsts.insert(hops[0].name.clone());
            let a: Vec<_> = hops
                .iter()
                .filter(|h| h.name == "a.d.test")
                .map(|h| h.addr)
                .collect();
            assert_eq!(
                a,
                vec![
                    "[::1]:2525".parse().unwrap(),
                    "127.0.0.1:2525".parse().unwrap()
                ]
            );
        }
        assert_eq!(
            firsts.len(),
            2,
            "equal preferences are shuffled: {firsts:?}"
        );
    }

    #[test]
    fn no_mx_means_the_domain_itself() {
        let mut dns = FakeDns::default();
        dns.mx.insert("d.test".into(), Err(DnsError::NoData));
        dns.ips.insert("d.test".into(), Ok(vec![ip("127.0.0.9")]));
        let hops = block_on(mx_hops(&dns, "d.test", 25)).unwrap();
        assert_eq!(
            hops,
            vec![Hop {
                name: "d.test".into(),
                addr: "127.0.0.9:25".parse().unwrap()
            }]
        );
    }

    #[test]
    fn null_mx_and_missing_domain_are_permanent() {
        let mut dns = FakeDns::default();
        dns.mx.insert("null.test".into(), Ok(vec![(0, "".into())]));
        assert!(matches!(
            block_on(mx_hops(&dns, "null.test", 25)),
            Err(RouteError::Permanent("5.1.10", _))
        ));
        assert!(matches!(
            block_on(mx_hops(&dns, "gone.test", 25)),
            Err(RouteError::Permanent("5.1.2", _))
        ));
    }

    #[test]
    fn dns_trouble_and_addressless_mx_are_temporary() {
        let mut dns = FakeDns::default();
        dns.mx
            .insert("t.test".into(), Err(DnsError::Temporary("SERVFAIL".into())));
        dns.mx
            .insert("e.test".into(), Ok(vec![(10, "mx.e.test".into())]));
        dns.ips.insert(
            "mx.e.test".into(),
            Err(DnsError::Temporary("timeout".into())),
        );
        for d in ["t.test", "e.test"] {
            assert!(
                matches!(
                    block_on(mx_hops(&dns, d, 25)),
                    Err(RouteError::Temporary(_))
                ),
                "{d}"
            );
        }
    }

    #[test]
    fn relay_by_literal_or_name() {
        let mut dns = FakeDns::default();
        dns.ips
            .insert("relay.test".into(), Ok(vec![ip("127.0.0.5")]));
        let hops = block_on(relay_hops(&dns, "127.0.0.4", 465)).unwrap();
        assert_eq!(hops[0].addr, "127.0.0.4:465".parse().unwrap());
        let hops = block_on(relay_hops(&dns, "relay.test", 587)).unwrap();
        assert_eq!(hops[0].addr, "127.0.0.5:587".parse().unwrap());
    }
}
