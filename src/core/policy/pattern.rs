//! How a policy's list entries match a requested value: a name pattern
//! where `*` stands for any run of characters, or an IP network. An entry
//! without `*` is exact; only exact entries may allow a privileged value.

use std::net::IpAddr;

use ipnet::IpNet;

/// Whether `pattern` matches all of `value`. `*` matches any run of
/// characters, dots included; everything else matches itself (ASCII case
/// ignored when `fold_case`, as DNS names compare).
pub fn matches(pattern: &str, value: &str, fold_case: bool) -> bool {
    let (p, v) = if fold_case {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    let mut parts = p.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = v.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether an entry names one value exactly (has no `*`).
pub fn is_exact(pattern: &str) -> bool {
    !pattern.contains('*')
}

/// A CIDR (a list entry of `allowed.ipAddresses`, a `certop run` flag),
/// parsed; one that is not a CIDR is reported (the CRD's CEL rule refuses
/// it first).
pub fn parse_network(entry: &str) -> Result<IpNet, NotACidr> {
    entry
        .trim()
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .map_err(|_| NotACidr(entry.to_string()))
}

/// An entry that should be a CIDR and is not (the entry as written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR such as 10.0.0.0/8, 10.1.2.3/32 or fd00::/64")]
pub struct NotACidr(pub String);

/// Whether `ip` lies inside `network`, IPv4-mapped IPv6 addresses compared
/// as the IPv4 address they carry.
pub fn contains(network: &IpNet, ip: &IpAddr) -> bool {
    network.contains(&ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_values_and_star_any_run() {
        let cases = [
            ("web", "web", true),
            ("web", "web2", false),
            ("web", "aweb", false),
            ("*.example.com", "a.example.com", true),
            ("*.example.com", "a.b.example.com", true),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "evil-example.com", false),
            ("*.example.com", "a.example.com.evil", false),
            ("team-a-*", "team-a-bot", true),
            ("team-a-*", "team-b-bot", false),
            ("spiffe://c/ns/*/sa/web", "spiffe://c/ns/a/sa/web", true),
            ("spiffe://c/ns/*/sa/web", "spiffe://c/ns/a/sa/db", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(matches(pattern, value, false), want, "{pattern} ~ {value}");
        }
        assert!(matches("Web.Example", "web.example", true));
        assert!(!matches("Web", "web", false));
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let n = parse_network("10.0.0.0/8").expect("net");
        assert!(contains(&n, &"10.1.2.3".parse().expect("ip")));
        assert!(!contains(&n, &"11.0.0.1".parse().expect("ip")));
        assert!(contains(&n, &"::ffff:10.0.0.1".parse().expect("ip")));
        let host = parse_network("10.96.0.1/32").expect("net");
        assert!(!contains(&host, &"10.96.0.2".parse().expect("ip")));
        assert!(parse_network("10.0.0.1").is_err());
    }
}
