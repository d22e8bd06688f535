//! Throwaway certificates for a test control plane, made with the `openssl` CLI as
//! controller-runtime's envtest makes them in Go: one CA signs the API server's serving
//! certificate and every client certificate (admin, controller manager, scheduler, nodes); a
//! separate RSA key pair signs service-account tokens. Everything lives in the control plane's
//! own directory and dies with it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Days every certificate is valid for: a test run is minutes long.
const DAYS: &str = "2";

/// A key and the certificate the CA signed for it.
#[derive(Clone, Debug)]
pub struct KeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA and the service-account signer of one control plane.
#[derive(Clone, Debug)]
pub struct Pki {
    dir: PathBuf,
    pub ca: KeyPair,
    /// Service-account token signer: private key and public key (PEM).
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

/// Runs `openssl args`, failing with its stderr.
fn openssl(args: &[&str], cwd: &Path) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command {
            command: format!("openssl {}", args.join(" ")),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("openssl {}", args.join(" ")),
        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// The `subjectAltName` value for `ips` and `dns` names.
pub fn subject_alt_names(ips: &[IpAddr], dns: &[&str]) -> String {
    let mut names: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
    names.extend(dns.iter().map(|d| format!("DNS:{d}")));
    names.join(",")
}

/// The `-subj` value for common name `cn` in organizations `groups` (Kubernetes reads the
/// user from CN and its groups from O).
pub fn subject(cn: &str, groups: &[&str]) -> String {
    let mut subj = String::new();
    for group in groups {
        subj.push_str(&format!("/O={group}"));
    }
    subj.push_str(&format!("/CN={cn}"));
    subj
}

impl Pki {
    /// Makes the CA and the service-account signer in `dir`.
    pub fn create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                DAYS,
                "-subj",
                "/CN=ferrokv-test-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            ],
            dir,
        )?;
        openssl(&["genrsa", "-out", "sa.key", "2048"], dir)?;
        openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca: KeyPair {
                cert: dir.join("ca.crt"),
                key: dir.join("ca.key"),
            },
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        })
    }

    /// A serving certificate named `name` for `alt_names` (see [`subject_alt_names`]).
    pub fn serving(&self, name: &str, alt_names: &str) -> Result<KeyPair> {
        self.sign(
            name,
            &subject(name, &[]),
            &format!(
                "subjectAltName={alt_names}\nextendedKeyUsage=serverAuth\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\n"
            ),
        )
    }

    /// A client certificate for user `cn` in `groups`, stored as `name`.
    pub fn client(&self, name: &str, cn: &str, groups: &[&str]) -> Result<KeyPair> {
        self.sign(
            name,
            &subject(cn, groups),
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        )
    }

    fn sign(&self, name: &str, subj: &str, extensions: &str) -> Result<KeyPair> {
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        let ext_path = self.dir.join(&ext);
        std::fs::write(&ext_path, extensions).map_err(|e| Error::io(&ext_path, e))?;
        openssl(
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                subj,
            ],
            &self.dir,
        )?;
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                DAYS,
                "-extfile",
                &ext,
            ],
            &self.dir,
        )?;
        Ok(KeyPair {
            cert: self.dir.join(cert),
            key: self.dir.join(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_put_groups_in_o_and_the_user_in_cn() {
        assert_eq!(
            subject("system:node:n1", &["system:nodes"]),
            "/O=system:nodes/CN=system:node:n1"
        );
        assert_eq!(subject("admin", &[]), "/CN=admin");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            subject_alt_names(&[ip], &["localhost", "kubernetes"]),
            "IP:127.0.0.1,DNS:localhost,DNS:kubernetes"
        );
    }

    #[test]
    fn the_ca_signs_serving_and_client_certificates_openssl_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::create(dir.path()).unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let serving = pki
            .serving("apiserver", &subject_alt_names(&[ip], &["localhost"]))
            .unwrap();
        let client = pki.client("admin", "admin", &["system:masters"]).unwrap();
        for (pair, purpose) in [(&serving, "sslserver"), (&client, "sslclient")] {
            let out = Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(&pki.ca.cert)
                .arg(&pair.cert)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&client.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("system:masters") && text.contains("admin"),
            "{text}"
        );
        // A client certificate must not serve.
        let out = Command::new("openssl")
            .args(["verify", "-purpose", "sslserver", "-CAfile"])
            .arg(&pki.ca.cert)
            .arg(&client.cert)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}
