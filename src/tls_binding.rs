//! `tls-server-end-point` channel binding data (RFC 5929) from the server certificate, for
//! SCRAM-SHA-256-PLUS: the certificate's hash with the hash of its signature algorithm (SHA-256
//! for MD5 and SHA-1).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash a certificate signed with this algorithm binds with, by DER-encoded OID.
const ALGORITHMS: &[(&[u8], Hash)] = &[
    // md5WithRSAEncryption, sha1WithRSAEncryption -> SHA-256 (RFC 5929 section 4.1)
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        Hash::Sha256,
    ),
    // sha256/384/512WithRSAEncryption
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        Hash::Sha512,
    ),
    // ecdsa-with-SHA1 -> SHA-256; ecdsa-with-SHA256/384/512
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01], Hash::Sha256),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        Hash::Sha256,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
        Hash::Sha384,
    ),
    (
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
        Hash::Sha512,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The binding data for a DER certificate; `None` when its signature algorithm has no single
/// hash (Ed25519, RSA-PSS) or the DER does not parse. Then SCRAM-SHA-256-PLUS is not offered.
pub fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE, signatureAlgorithm SEQUENCE {
    //   algorithm OBJECT IDENTIFIER, parameters ANY OPTIONAL }, signatureValue BIT STRING }
    let (0x30, body, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, _, rest) = tlv(body)? else {
        return None;
    };
    let (0x30, alg, _) = tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(alg)? else {
        return None;
    };
    let hash = ALGORITHMS.iter().find(|(o, _)| *o == oid)?.1;
    Some(match hash {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

/// One DER tag-length-value: (tag, contents, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_p256_certificates_bind_with_sha256() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = cert.cert.der().to_vec();
        assert_eq!(
            tls_server_end_point(&der),
            Some(Sha256::digest(&der).to_vec())
        );
    }

    #[test]
    fn p384_certificates_bind_with_sha384() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(
            tls_server_end_point(&der),
            Some(Sha384::digest(&der).to_vec())
        );
    }

    #[test]
    fn ed25519_and_garbage_have_no_binding() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(tls_server_end_point(&der), None);
        assert_eq!(tls_server_end_point(&[0x30, 0x82, 0xff]), None);
        assert_eq!(tls_server_end_point(&[]), None);
    }
}
