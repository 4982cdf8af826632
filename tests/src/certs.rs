//! A small test PKI made by the openssl command-line tool (not our code): a CA, and
//! certificates it signs, ECDSA P-256, private keys mode 0600. For the TLS tests and the TLS
//! benchmark.

use std::path::Path;
use std::process::Command;

/// One certificate to issue: `NAME.pem` and `NAME.key`, for `cn`, with the X.509 extension
/// line `ext` (e.g. `subjectAltName=IP:127.0.0.1`), valid `days` days (0: not valid after
/// the second it was made).
pub struct Cert<'a> {
    pub name: &'a str,
    pub cn: &'a str,
    pub ext: &'a str,
    pub days: u32,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("openssl (installed by .ci/run and `cargo xtask deps`): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Makes `ca.pem`/`ca.key` (CN `ca_cn`) in `dir` and every certificate of `certs`, signed by it.
pub fn issue(dir: &Path, ca_cn: &str, certs: &[Cert]) -> Result<(), String> {
    const EC: [&str; 5] = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let subj = format!("/CN={ca_cn}");
    let mut ca = vec!["req", "-x509"];
    ca.extend(EC);
    ca.extend([
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &subj,
    ]);
    openssl(dir, &ca)?;
    let mut keys = vec!["ca.key".to_string()];
    for c in certs {
        let (key, csr, pem, ext) = (
            format!("{}.key", c.name),
            format!("{}.csr", c.name),
            format!("{}.pem", c.name),
            format!("{}.ext", c.name),
        );
        std::fs::write(dir.join(&ext), format!("{}\n", c.ext)).map_err(|e| e.to_string())?;
        let subj = format!("/CN={}", c.cn);
        let mut req = vec!["req"];
        req.extend(EC);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req)?;
        let days = c.days.to_string();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                &days,
                "-extfile",
                &ext,
            ],
        )?;
        keys.push(key);
    }
    for k in keys {
        std::fs::set_permissions(
            dir.join(k),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
