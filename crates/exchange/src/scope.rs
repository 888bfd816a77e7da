//! Scope normalization: the token-cache key and what is sent upstream.

/// OIDC scopes MSAL Go appends to every request, even client credentials (PROTOCOL.md §1.3).
/// They mean nothing for an app token, and Entra rejects them in a client-credentials request.
const OIDC_SCOPES: [&str; 3] = ["openid", "offline_access", "profile"];

/// Normalizes a space-separated `scope` parameter: trims it, collapses runs of whitespace to one
/// space, drops the OIDC scopes `openid`, `offline_access` and `profile` (any case) and exact
/// duplicates, keeping the order of the rest.
///
/// Case is otherwise **kept**: `https://Management.azure.com/.default` and
/// `https://management.azure.com/.default` are different cache keys and are sent to Entra as
/// given. Merging them could hand a token minted for one resource string to a caller that asked
/// for another; keeping them apart costs at most one more cached token per spelling.
///
/// Returns `None` when nothing is left.
///
/// ```
/// use idbind_exchange::normalize_scope;
///
/// assert_eq!(
///     normalize_scope("  https://vault.azure.net/.default\topenid offline_access profile ").as_deref(),
///     Some("https://vault.azure.net/.default"),
/// );
/// assert_eq!(normalize_scope("openid profile"), None);
/// ```
pub fn normalize_scope(scope: &str) -> Option<String> {
    let mut kept: Vec<&str> = Vec::new();
    for s in scope.split_whitespace() {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s)) || kept.contains(&s) {
            continue;
        }
        kept.push(s);
    }
    if kept.is_empty() {
        None
    } else {
        Some(kept.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_collapses_and_drops_oidc_scopes() {
        let cases = [
            (
                "https://management.azure.com/.default",
                Some("https://management.azure.com/.default"),
            ),
            (
                "https://management.azure.com//.default",
                Some("https://management.azure.com//.default"),
            ),
            (
                " a/.default  \n openid   OpenID Profile offline_access ",
                Some("a/.default"),
            ),
            ("a/.default b/.default a/.default", Some("a/.default b/.default")),
            ("A/.default a/.default", Some("A/.default a/.default")),
            ("", None),
            ("   ", None),
            ("openid offline_access profile", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_scope(input).as_deref(), want, "{input:?}");
        }
    }
}
