//! URL rules shared by FIC validation and issuer fetches.

use std::net::IpAddr;

use url::Url;

/// Whether a URL's host is a loopback address or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Checks an issuer URL: absolute `https`, or `http` on a loopback host only.
pub(crate) fn check_issuer_url(issuer: &str) -> Result<Url, String> {
    let url = Url::parse(issuer).map_err(|e| format!("it is not an absolute URL ({e})"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("plain http is accepted only for loopback hosts; use https".into()),
        other => Err(format!("the scheme must be https, found '{other}'")),
    }
}
