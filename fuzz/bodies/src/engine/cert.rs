//! The edge's certificate, made once per process: generating a P-256 key and signing a
//! certificate on every fuzz iteration would cost more than the iteration itself.

use std::sync::OnceLock;

use boring::asn1::Asn1Time;
use boring::ec::{EcGroup, EcKey};
use boring::error::ErrorStack;
use boring::hash::MessageDigest;
use boring::nid::Nid;
use boring::pkey::PKey;
use boring::x509::extension::SubjectAlternativeName;
use boring::x509::{X509, X509NameBuilder};

/// Certificate and private key, PEM.
pub(crate) struct Pems {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// The process's certificate for `localhost`.
pub(crate) fn pems() -> &'static Pems {
    static PEMS: OnceLock<Pems> = OnceLock::new();
    PEMS.get_or_init(|| generate().expect("BoringSSL makes a self-signed certificate"))
}

fn generate() -> Result<Pems, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "veil fuzz edge")?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    cert.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(30)?;
    cert.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&cert.x509v3_context(None, None))?;
    cert.append_extension(&san)?;
    cert.sign(&key, MessageDigest::sha256())?;
    let pem = |bytes: Vec<u8>| String::from_utf8(bytes).expect("PEM is ASCII");
    Ok(Pems {
        cert: pem(cert.build().to_pem()?),
        key: pem(key.private_key_to_pem_pkcs8()?),
    })
}
