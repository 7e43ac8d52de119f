//! Writing a kubeconfig that points kubectl (or kube-rs, Python, node clients) at a simulator URL, with its CA and token.

use std::io::Write;
use std::path::Path;

use base64::Engine;

use crate::auth::BearerToken;
use crate::error::SimError;

/// What a client needs besides the URL: the CA to trust (HTTPS) and the token to present.
#[derive(Clone, Copy, Debug, Default)]
pub struct Credentials<'a> {
    /// PEM of the CA that signed the serving certificate; written base64-encoded as
    /// `certificate-authority-data`.
    pub ca_pem: Option<&'a str>,
    /// Written as `users[].user.token`.
    pub token: Option<&'a BearerToken>,
}

/// The kubeconfig text for a server URL (context `podgrant-sim`, namespace `default`, no credentials).
pub fn render(server_url: &str) -> String {
    render_with(server_url, &Credentials::default())
}

/// The kubeconfig text for a server URL with a CA and/or a token.
pub fn render_with(server_url: &str, creds: &Credentials<'_>) -> String {
    let ca = creds
        .ca_pem
        .map(|pem| {
            format!(
                "\n    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(pem)
            )
        })
        .unwrap_or_default();
    // The token's character set (auth.rs) needs no escaping inside double quotes.
    let user = creds
        .token
        .map(|t| format!("\n    token: \"{}\"", t.expose()))
        .unwrap_or_else(|| match creds.ca_pem {
            // kubectl prompts for a username on an HTTPS server when the user has no credential
            // at all; a server without a configured token accepts any, so name a dummy one.
            Some(_) => "\n    token: \"podgrant-sim-no-auth\"".to_string(),
            None => " {}".to_string(),
        });
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: podgrant-sim
  cluster:
    server: {server_url}{ca}
contexts:
- name: podgrant-sim
  context:
    cluster: podgrant-sim
    user: podgrant-sim
    namespace: default
current-context: podgrant-sim
preferences: {{}}
users:
- name: podgrant-sim
  user:{user}
"
    )
}

/// Write the kubeconfig to `path`; with a token the file is created owner-only (0600 on Unix).
pub fn write(path: &Path, server_url: &str, creds: &Credentials<'_>) -> Result<(), SimError> {
    let err = |e| SimError::io(format!("writing kubeconfig {}", path.display()), e);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if creds.token.is_some() {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    #[cfg(unix)]
    if creds.token.is_some() {
        // An existing file keeps its mode on open; tighten it before the token goes in.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(render_with(server_url, creds).as_bytes())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_keeps_the_old_kubeconfig_and_https_adds_ca_and_token() {
        let plain = render("http://127.0.0.1:1");
        assert!(plain.contains("server: http://127.0.0.1:1\ncontexts:"));
        assert!(plain.ends_with("  user: {}\n"));
        assert!(!plain.contains("certificate-authority-data"));

        let token = BearerToken::new("abc.def").unwrap();
        let full = render_with(
            "https://127.0.0.1:2",
            &Credentials {
                ca_pem: Some("PEM"),
                token: Some(&token),
            },
        );
        assert!(full.contains(
            "    server: https://127.0.0.1:2\n    certificate-authority-data: UEVN\ncontexts:"
        ));
        assert!(
            full.ends_with("  user:\n    token: \"abc.def\"\n"),
            "{full}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_kubeconfig_with_a_token_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kc");
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let token = BearerToken::new("t").unwrap();
        let creds = Credentials {
            ca_pem: None,
            token: Some(&token),
        };
        write(&p, "http://127.0.0.1:3", &creds).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .contains("token: \"t\""));
    }
}
