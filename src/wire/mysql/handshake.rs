//! Connection-phase packets: server greeting (HandshakeV10), HandshakeResponse41, SSL request,
//! auth switch request and auth "more data".

use bytes::BufMut;

use super::packet::{
    caps, put_lenenc_bytes, put_nul_str, read_bytes, read_lenenc_bytes, read_nul_str, read_u16,
    read_u32, read_u8,
};
use super::WireError;

/// Length of the auth-plugin data (scramble) in the greeting.
pub const SCRAMBLE_LEN: usize = 20;

/// The server's initial handshake packet, protocol version 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeV10 {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: [u8; 20],
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl HandshakeV10 {
    /// Encode the payload (no MariaDB extended capabilities: the reserved bytes are zero).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(80 + self.server_version.len() + self.auth_plugin.len());
        b.put_u8(10);
        put_nul_str(&mut b, self.server_version.as_bytes());
        b.put_u32_le(self.connection_id);
        b.put_slice(&self.scramble[..8]);
        b.put_u8(0);
        b.put_u16_le(self.capabilities as u16);
        b.put_u8(self.charset);
        b.put_u16_le(self.status);
        b.put_u16_le((self.capabilities >> 16) as u16);
        b.put_u8(SCRAMBLE_LEN as u8 + 1);
        b.put_slice(&[0; 10]);
        b.put_slice(&self.scramble[8..]);
        b.put_u8(0);
        if self.capabilities & caps::CLIENT_PLUGIN_AUTH != 0 {
            put_nul_str(&mut b, self.auth_plugin.as_bytes());
        }
        b
    }

    /// Parse a server greeting. Requires CLIENT_PROTOCOL_41 and a 20-byte scramble; MariaDB's
    /// extended capabilities in the reserved bytes are ignored.
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        const M: WireError = WireError::Malformed("handshake");
        let mut b = payload;
        match read_u8(&mut b) {
            Some(10) => {}
            Some(0xFF) => return Err(WireError::Malformed("handshake: server sent an error")),
            Some(_) => return Err(WireError::Unsupported("handshake protocol version")),
            None => return Err(M),
        }
        let server_version = String::from_utf8_lossy(read_nul_str(&mut b).ok_or(M)?).into_owned();
        let connection_id = read_u32(&mut b).ok_or(M)?;
        let part1 = read_bytes(&mut b, 8).ok_or(M)?;
        read_u8(&mut b).ok_or(M)?;
        let caps_low = read_u16(&mut b).ok_or(M)?;
        let charset = read_u8(&mut b).ok_or(M)?;
        let status = read_u16(&mut b).ok_or(M)?;
        let caps_high = read_u16(&mut b).ok_or(M)?;
        let capabilities = u32::from(caps_low) | u32::from(caps_high) << 16;
        if capabilities & caps::CLIENT_PROTOCOL_41 == 0 {
            return Err(WireError::Unsupported("pre-4.1 server"));
        }
        let data_len = usize::from(read_u8(&mut b).ok_or(M)?);
        read_bytes(&mut b, 10).ok_or(M)?;
        // Part 2 is max(13, data_len - 8) bytes including a trailing NUL; take its first 12.
        let part2_len = data_len.saturating_sub(8).max(13).min(b.len());
        let part2 = read_bytes(&mut b, part2_len).ok_or(M)?;
        if part2.len() < SCRAMBLE_LEN - 8 {
            return Err(M);
        }
        let mut scramble = [0u8; 20];
        scramble[..8].copy_from_slice(part1);
        scramble[8..].copy_from_slice(&part2[..12]);
        let auth_plugin = if capabilities & caps::CLIENT_PLUGIN_AUTH != 0 {
            // Some old servers omit the terminating NUL.
            let name = read_nul_str(&mut b).unwrap_or(b);
            String::from_utf8_lossy(name).into_owned()
        } else {
            String::new()
        };
        Ok(HandshakeV10 {
            server_version,
            connection_id,
            scramble,
            capabilities,
            charset,
            status,
            auth_plugin,
        })
    }
}

/// The client's HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub username: String,
    pub auth_response: Vec<u8>,
    /// Only with CLIENT_CONNECT_WITH_DB; an empty name is `None`.
    pub database: Option<String>,
    /// Only with CLIENT_PLUGIN_AUTH.
    pub auth_plugin: Option<String>,
    /// Only with CLIENT_CONNECT_ATTRS, in the client's order.
    pub attributes: Vec<(String, String)>,
}

fn utf8(b: &[u8], what: &'static str) -> Result<String, WireError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| WireError::Malformed(what))
}

/// Read the auth response in whichever form `capabilities` selects.
pub(crate) fn read_auth_response<'a>(b: &mut &'a [u8], capabilities: u32) -> Option<&'a [u8]> {
    if capabilities & caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        read_lenenc_bytes(b)
    } else if capabilities & caps::CLIENT_SECURE_CONNECTION != 0 {
        let len = usize::from(read_u8(b)?);
        read_bytes(b, len)
    } else {
        read_nul_str(b)
    }
}

/// Read a NUL-terminated string, accepting a missing NUL at the very end of the packet.
pub(crate) fn read_nul_str_lenient<'a>(b: &mut &'a [u8]) -> &'a [u8] {
    match read_nul_str(b) {
        Some(s) => s,
        None => std::mem::take(b),
    }
}

/// Read the CLIENT_CONNECT_ATTRS block: a length-encoded total, then key/value pairs.
pub(crate) fn read_attributes(b: &mut &[u8]) -> Option<Vec<(String, String)>> {
    let mut block = read_lenenc_bytes(b)?;
    let mut out = Vec::new();
    while !block.is_empty() {
        let k = read_lenenc_bytes(&mut block)?;
        let v = read_lenenc_bytes(&mut block)?;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(out)
}

pub(crate) fn put_attributes(b: &mut Vec<u8>, attributes: &[(String, String)]) {
    let mut block = Vec::new();
    for (k, v) in attributes {
        put_lenenc_bytes(&mut block, k.as_bytes());
        put_lenenc_bytes(&mut block, v.as_bytes());
    }
    put_lenenc_bytes(b, &block);
}

impl HandshakeResponse {
    /// Parse a HandshakeResponse41 (CLIENT_PROTOCOL_41 required). Every length is checked.
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        const M: WireError = WireError::Malformed("handshake response");
        let mut b = payload;
        let capabilities = read_u32(&mut b).ok_or(M)?;
        if capabilities & caps::CLIENT_PROTOCOL_41 == 0 {
            return Err(WireError::Unsupported("pre-4.1 client"));
        }
        let max_packet = read_u32(&mut b).ok_or(M)?;
        let charset = read_u8(&mut b).ok_or(M)?;
        read_bytes(&mut b, 23).ok_or(M)?;
        let username = utf8(read_nul_str(&mut b).ok_or(M)?, "user name")?;
        let auth_response = read_auth_response(&mut b, capabilities).ok_or(M)?.to_vec();
        let mut database = None;
        if capabilities & caps::CLIENT_CONNECT_WITH_DB != 0 && !b.is_empty() {
            let db = read_nul_str_lenient(&mut b);
            if !db.is_empty() {
                database = Some(utf8(db, "database name")?);
            }
        }
        let mut auth_plugin = None;
        if capabilities & caps::CLIENT_PLUGIN_AUTH != 0 && !b.is_empty() {
            let name = read_nul_str_lenient(&mut b);
            auth_plugin = Some(String::from_utf8_lossy(name).into_owned());
        }
        let mut attributes = Vec::new();
        if capabilities & caps::CLIENT_CONNECT_ATTRS != 0 && !b.is_empty() {
            attributes = read_attributes(&mut b).ok_or(M)?;
        }
        Ok(HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            username,
            auth_response,
            database,
            auth_plugin,
            attributes,
        })
    }

    /// Encode the payload; the optional parts are written as `capabilities` says.
    pub fn encode(&self) -> Vec<u8> {
        let c = self.capabilities;
        let mut b = Vec::with_capacity(64 + self.username.len() + self.auth_response.len());
        b.put_u32_le(c);
        b.put_u32_le(self.max_packet);
        b.put_u8(self.charset);
        b.put_slice(&[0; 23]);
        put_nul_str(&mut b, self.username.as_bytes());
        if c & caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut b, &self.auth_response);
        } else if c & caps::CLIENT_SECURE_CONNECTION != 0 {
            let n = self.auth_response.len().min(255);
            b.put_u8(n as u8);
            b.put_slice(&self.auth_response[..n]);
        } else {
            put_nul_str(&mut b, &self.auth_response);
        }
        if c & caps::CLIENT_CONNECT_WITH_DB != 0 {
            put_nul_str(&mut b, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if c & caps::CLIENT_PLUGIN_AUTH != 0 {
            put_nul_str(&mut b, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if c & caps::CLIENT_CONNECT_ATTRS != 0 {
            put_attributes(&mut b, &self.attributes);
        }
        b
    }
}

/// The 32-byte SSLRequest: a truncated handshake response with CLIENT_SSL set.
pub fn is_ssl_request(payload: &[u8]) -> bool {
    payload.len() == 32
        && u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]) & caps::CLIENT_SSL
            != 0
}

/// Build the 32-byte SSLRequest a client (the proxy's backend side) sends before TLS.
pub fn ssl_request(capabilities: u32, max_packet: u32, charset: u8) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.put_u32_le(capabilities | caps::CLIENT_SSL);
    b.put_u32_le(max_packet);
    b.put_u8(charset);
    b.put_slice(&[0; 23]);
    b
}

/// AuthSwitchRequest: 0xFE, plugin name, NUL, plugin data. For mysql_native_password and
/// caching_sha2_password the data is the 20-byte scramble followed by a NUL.
pub fn auth_switch_request(plugin: &str, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + plugin.len() + data.len());
    b.put_u8(0xFE);
    put_nul_str(&mut b, plugin.as_bytes());
    b.put_slice(data);
    b
}

/// Parse an AuthSwitchRequest: (plugin, data) with one trailing NUL of the data removed, so a
/// native/sha2 switch yields the bare 20-byte scramble. The 1-byte old form (0xFE alone) asks
/// for `mysql_old_password` with no data.
pub fn parse_auth_switch(payload: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut b = payload;
    if read_u8(&mut b)? != 0xFE {
        return None;
    }
    if b.is_empty() {
        return Some(("mysql_old_password".to_string(), Vec::new()));
    }
    let plugin = String::from_utf8_lossy(read_nul_str(&mut b)?).into_owned();
    let data = b.strip_suffix(&[0]).unwrap_or(b);
    Some((plugin, data.to_vec()))
}

/// AuthMoreData: 0x01 then the data (e.g. caching_sha2 fast-auth result or a public key).
pub fn auth_more_data(data: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + data.len());
    b.put_u8(0x01);
    b.put_slice(data);
    b
}

/// The data of an AuthMoreData packet (0x01 header).
pub fn parse_auth_more_data(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((0x01, data)) => Some(data),
        _ => None,
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
