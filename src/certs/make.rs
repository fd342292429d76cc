//! The certificates themselves (rcgen).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use faultline_controller::auth::Role;
use faultline_controller::auth::principal::{spiffe_uri, valid_name};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

use super::files::{check_free, write_cert, write_key};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
const CA_NAME: &str = "faultline development CA";

/// `certs init`.
pub fn init(out: &Path, force: bool, days: u32) -> anyhow::Result<Vec<PathBuf>> {
    let (cert_path, key_path) = (out.join(CA_CERT), out.join(CA_KEY));
    check_free(&[&cert_path, &key_path], force)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days)?;
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the CA certificate")?;
    Ok(vec![
        write_key(&key_path, &key.serialize_pem())?,
        write_cert(&cert_path, &cert.pem())?,
    ])
}

/// What `certs issue` was asked for.
pub struct IssueRequest<'a> {
    pub ca_dir: &'a Path,
    pub out: &'a Path,
    pub name: &'a str,
    pub role: Role,
    pub dns: &'a [String],
    pub ip: &'a [IpAddr],
    pub force: bool,
    pub days: u32,
}

/// `certs issue`.
pub fn issue(req: &IssueRequest<'_>) -> anyhow::Result<Vec<PathBuf>> {
    if !valid_name(req.name) {
        bail!(
            "NAME {:?}: use 1 to 128 of A-Z a-z 0-9 . _ - (it becomes a file name and a URI)",
            req.name
        );
    }
    let cert_path = req.out.join(format!("{}.pem", req.name));
    let key_path = req.out.join(format!("{}-key.pem", req.name));
    check_free(&[&cert_path, &key_path], req.force)?;
    let issuer = load_ca(req.ca_dir)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = name(req.name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if req.role.is_client() {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let (mut dns, mut ips) = (req.dns.to_vec(), req.ip.to_vec());
    if !req.role.is_client() && dns.is_empty() && ips.is_empty() {
        // A server certificate with no names given: good for this machine and its name.
        dns = vec![req.name.to_owned(), "localhost".to_owned()];
        ips = vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ];
    }
    let mut sans = vec![SanType::URI(
        spiffe_uri(req.role, req.name)
            .try_into()
            .context("the URI SAN")?,
    )];
    for d in &dns {
        sans.push(SanType::DnsName(
            d.as_str()
                .try_into()
                .with_context(|| format!("--dns {d:?} is not a DNS name"))?,
        ));
    }
    sans.extend(ips.into_iter().map(SanType::IpAddress));
    params.subject_alt_names = sans;
    validity(&mut params, req.days)?;

    std::fs::create_dir_all(req.out)
        .with_context(|| format!("cannot create {}", req.out.display()))?;
    let key = KeyPair::generate().context("cannot generate the key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the certificate")?;
    Ok(vec![
        write_key(&key_path, &key.serialize_pem())?,
        write_cert(&cert_path, &cert.pem())?,
    ])
}

fn load_ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let read = |p: &Path| {
        std::fs::read_to_string(p).with_context(|| {
            format!(
                "--ca-dir: cannot read {} (create a CA with `faultline certs init --out DIR`)",
                p.display()
            )
        })
    };
    let key = KeyPair::from_pem(&read(&key_path)?)
        .with_context(|| format!("--ca-dir: {} is not a PEM private key", key_path.display()))?;
    Issuer::from_ca_cert_pem(&read(&cert_path)?, key)
        .with_context(|| format!("--ca-dir: {} is not a PEM certificate", cert_path.display()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "faultline");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from yesterday (clocks differ) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) -> anyhow::Result<()> {
    if days == 0 {
        bail!("--days must be at least 1");
    }
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs()
        / 86_400;
    let today = i64::try_from(today).context("the clock is too far ahead")?;
    let (y, m, d) = civil(today - 1);
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = civil(today + i64::from(days));
    params.not_after = date_time_ymd(y, m, d);
    Ok(())
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_from_days() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
    }
}
