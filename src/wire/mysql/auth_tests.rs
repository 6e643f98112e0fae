//! Unit tests for password scrambles and the RSA exchange.

use super::*;

// Test vector from mysql_common 0.37 (scramble.rs), re-derived with Python's hashlib.
const SCR: &[u8; 20] = b"NR3HP:qIYa_9=db?Sd{`";
const PW: &[u8] = b"G!ider27";
const NATIVE: [u8; 20] = [
    0x09, 0xcf, 0xf8, 0x85, 0x5e, 0x9e, 0x70, 0x53, 0x40, 0xff, 0x22, 0x70, 0xd8, 0xfb, 0x9f, 0xad,
    0xba, 0x90, 0x6b, 0x70,
];
const SHA2: [u8; 32] = [
    0x4f, 0x97, 0xbb, 0xfd, 0x20, 0x24, 0x01, 0xc4, 0x2a, 0x69, 0xde, 0xaa, 0xe5, 0x3b, 0xda, 0x07,
    0x7e, 0xd7, 0x57, 0x85, 0x63, 0xc1, 0xa8, 0x0e, 0xb8, 0x16, 0xc8, 0x21, 0x19, 0xb6, 0x8d, 0x2e,
];

#[test]
fn native_known_vector() {
    assert_eq!(native_scramble(PW, SCR), NATIVE);
    assert!(native_verify(PW, SCR, &NATIVE));
    let mut wrong = NATIVE;
    wrong[19] ^= 1;
    assert!(!native_verify(PW, SCR, &wrong));
    assert!(!native_verify(PW, SCR, &NATIVE[..19]));
    assert!(!native_verify(b"other", SCR, &NATIVE));
    assert!(!native_verify(PW, b"NR3HP:qIYa_9=db?Sd{a", &NATIVE));
}

#[test]
fn sha2_known_vector() {
    assert_eq!(sha2_scramble(PW, SCR), SHA2);
    assert!(sha2_verify(PW, SCR, &SHA2));
    assert!(!sha2_verify(PW, SCR, &SHA2[..31]));
    assert!(!sha2_verify(PW, SCR, &NATIVE));
    assert!(!sha2_verify(b"G!ider28", SCR, &SHA2));
}

#[test]
fn empty_passwords() {
    assert!(native_verify(b"", SCR, b""));
    assert!(!native_verify(b"", SCR, &native_scramble(b"", SCR)));
    assert!(!native_verify(PW, SCR, b""));
    assert!(sha2_verify(b"", SCR, b""));
    assert!(!sha2_verify(PW, SCR, b""));
    assert!(!sha2_verify(b"", SCR, &[0; 32]));
}

#[test]
fn scrambles_are_mysql_style() {
    let a = random_scramble();
    let b = random_scramble();
    assert_ne!(a, b);
    for c in a.iter().chain(b.iter()) {
        assert!((1..=127).contains(c) && *c != b'$', "{c}");
    }
}

#[test]
fn rsa_exchange_roundtrip() {
    // A smaller key keeps the test fast; the code path is the same as 2048-bit.
    let keys = RsaKeys::with_bits(1024).unwrap();
    let pem = keys.public_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.trim_end().ends_with("-----END PUBLIC KEY-----"));
    let scramble = random_scramble();
    for pw in [
        &b"secret"[..],
        b"",
        b"a much longer password with spaces, 40+ chars",
    ] {
        let ct = encrypt_password(pw, &scramble, &pem).unwrap();
        assert_eq!(ct.len(), 128);
        assert_eq!(ct.len(), keys.ciphertext_len());
        assert_eq!(keys.decrypt_password(&ct, &scramble).unwrap(), pw);
        // A different scramble yields a different password.
        let other = random_scramble();
        assert_ne!(keys.decrypt_password(&ct, &other).unwrap(), pw);
    }
    assert_eq!(keys.decrypt_password(b"garbage", &scramble), None);
    assert_eq!(keys.decrypt_password(&[0u8; 128], &scramble), None);
    assert_eq!(keys.decrypt_password(&[1u8; 128], &[]), None);
    assert_eq!(encrypt_password(b"pw", &scramble, "not a key"), None);
    // Too long for OAEP-SHA1 under a 1024-bit key (max 86 bytes).
    assert_eq!(encrypt_password(&[b'x'; 90], &scramble, &pem), None);
}

#[test]
fn rsa_accepts_pkcs1_public_keys() {
    use rsa::pkcs1::EncodeRsaPublicKey;
    let keys = RsaKeys::with_bits(1024).unwrap();
    let pkcs1 = RsaPublicKey::from(&keys.private)
        .to_pkcs1_pem(LineEnding::LF)
        .unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let ct = encrypt_password(b"pw", SCR, &pkcs1).unwrap();
    assert_eq!(keys.decrypt_password(&ct, SCR).unwrap(), b"pw");
}

#[test]
fn generate_full_size_key() {
    let keys = RsaKeys::generate().unwrap();
    let ct = encrypt_password(b"pw", SCR, &keys.public_pem()).unwrap();
    assert_eq!(ct.len(), 256);
    assert_eq!(keys.ciphertext_len(), 256);
    assert_eq!(keys.decrypt_password(&ct, SCR).unwrap(), b"pw");
}
