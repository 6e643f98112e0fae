//! MySQL password authentication: mysql_native_password and caching_sha2_password scrambles
//! (both sides), random scrambles, and the RSA key exchange of caching_sha2 full authentication.

use rand::Rng;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::WireError;

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
pub const CLEAR_PASSWORD: &str = "mysql_clear_password";

/// caching_sha2_password: the client asks for the server's RSA public key (payload `[0x02]`).
pub const SHA2_REQUEST_PUBLIC_KEY: u8 = 0x02;
/// caching_sha2_password: AuthMoreData `[0x01, 0x03]` — fast authentication succeeded.
pub const SHA2_FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password: AuthMoreData `[0x01, 0x04]` — send the full password.
pub const SHA2_PERFORM_FULL_AUTH: u8 = 0x04;

/// RSA key size used by [`RsaKeys::generate`].
pub const RSA_BITS: usize = 2048;

/// A fresh 20-byte scramble as MySQL makes them: bytes 1..=127, never NUL or '$'.
pub fn random_scramble() -> [u8; 20] {
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        let mut v: u8 = rng.random_range(1..=127);
        if v == b'$' {
            v += 1;
        }
        *b = v;
    }
    s
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// mysql_native_password client response: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))).
pub fn native_scramble(password: &[u8], scramble: &[u8]) -> [u8; 20] {
    let stage1: [u8; 20] = Sha1::digest(password).into();
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(scramble);
    h.update(stage2);
    let mask: [u8; 20] = h.finalize().into();
    let mut out = [0u8; 20];
    for (o, (a, b)) in out.iter_mut().zip(stage1.iter().zip(mask.iter())) {
        *o = a ^ b;
    }
    out
}

/// Server-side check of a mysql_native_password response against the plain password. An empty
/// password matches only an empty response. Constant-time comparison.
pub fn native_verify(password: &[u8], scramble: &[u8], response: &[u8]) -> bool {
    if password.is_empty() || response.is_empty() {
        return password.is_empty() && response.is_empty();
    }
    ct_eq(&native_scramble(password, scramble), response)
}

/// caching_sha2_password client response: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + scramble).
pub fn sha2_scramble(password: &[u8], scramble: &[u8]) -> [u8; 32] {
    let stage1: [u8; 32] = Sha256::digest(password).into();
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(scramble);
    let mask: [u8; 32] = h.finalize().into();
    let mut out = [0u8; 32];
    for (o, (a, b)) in out.iter_mut().zip(stage1.iter().zip(mask.iter())) {
        *o = a ^ b;
    }
    out
}

/// Server-side check of a caching_sha2_password fast-auth response against the plain password.
/// An empty password matches only an empty response. Constant-time comparison.
pub fn sha2_verify(password: &[u8], scramble: &[u8], response: &[u8]) -> bool {
    if password.is_empty() || response.is_empty() {
        return password.is_empty() && response.is_empty();
    }
    ct_eq(&sha2_scramble(password, scramble), response)
}

fn xor_with_scramble(data: &mut [u8], scramble: &[u8]) {
    for (b, s) in data.iter_mut().zip(scramble.iter().cycle()) {
        *b ^= s;
    }
}

/// The proxy's RSA key pair for caching_sha2_password full authentication without TLS.
pub struct RsaKeys {
    private: RsaPrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKeys").finish_non_exhaustive()
    }
}

impl RsaKeys {
    /// Generate a 2048-bit key pair from the OS random source.
    pub fn generate() -> Result<Self, WireError> {
        Self::with_bits(RSA_BITS)
    }

    pub(crate) fn with_bits(bits: usize) -> Result<Self, WireError> {
        let private =
            RsaPrivateKey::new(&mut OsRng, bits).map_err(|e| WireError::Rsa(e.to_string()))?;
        let public_pem = RsaPublicKey::from(&private)
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| WireError::Rsa(e.to_string()))?;
        Ok(RsaKeys {
            private,
            public_pem,
        })
    }

    /// The public key as SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----"), which is what
    /// the server sends in AuthMoreData when the client asks for it.
    pub fn public_pem(&self) -> String {
        self.public_pem.clone()
    }

    /// Length in bytes of every ciphertext made with this key (the modulus size). A full-auth
    /// answer of any other length is not RSA-encrypted (e.g. a cleartext password).
    pub fn ciphertext_len(&self) -> usize {
        self.private.size()
    }

    /// Recover the password from a client's RSA-OAEP(SHA-1) ciphertext: decrypt, XOR with the
    /// 20-byte scramble repeated, strip the trailing NUL. `None` when decryption fails.
    pub fn decrypt_password(&self, ciphertext: &[u8], scramble: &[u8]) -> Option<Vec<u8>> {
        if scramble.is_empty() {
            return None;
        }
        let mut plain = self.private.decrypt(Oaep::new::<Sha1>(), ciphertext).ok()?;
        xor_with_scramble(&mut plain, scramble);
        if plain.last() == Some(&0) {
            plain.pop();
        }
        Some(plain)
    }
}

/// Client side of caching_sha2 full authentication over an unencrypted connection: (password +
/// NUL) XOR the scramble repeated, RSA-OAEP(SHA-1) encrypted with the server's public key (SPKI
/// "PUBLIC KEY" or PKCS#1 "RSA PUBLIC KEY" PEM). `None` when the key does not parse or the
/// password is too long for the key.
pub fn encrypt_password(password: &[u8], scramble: &[u8], public_pem: &str) -> Option<Vec<u8>> {
    if scramble.is_empty() {
        return None;
    }
    let pem = public_pem.trim();
    let key = RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .ok()?;
    let mut plain = Vec::with_capacity(password.len() + 1);
    plain.extend_from_slice(password);
    plain.push(0);
    xor_with_scramble(&mut plain, scramble);
    key.encrypt(&mut OsRng, Oaep::new::<Sha1>(), &plain).ok()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
