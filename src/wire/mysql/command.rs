//! COM_* command bytes and names, statement-id access, COM_STMT_EXECUTE view and rewrite,
//! COM_CHANGE_USER parsing, and the COM_STMT_PREPARE_OK packet.

use bytes::BufMut;

use super::handshake::{put_attributes, read_attributes, read_auth_response, read_nul_str_lenient};
use super::packet::{caps, put_nul_str, read_bytes, read_nul_str, read_u16, read_u32, read_u8};

pub const COM_SLEEP: u8 = 0x00;
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_CREATE_DB: u8 = 0x05;
pub const COM_DROP_DB: u8 = 0x06;
pub const COM_REFRESH: u8 = 0x07;
pub const COM_SHUTDOWN: u8 = 0x08;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_INFO: u8 = 0x0a;
pub const COM_CONNECT: u8 = 0x0b;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_DEBUG: u8 = 0x0d;
pub const COM_PING: u8 = 0x0e;
pub const COM_TIME: u8 = 0x0f;
pub const COM_DELAYED_INSERT: u8 = 0x10;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_TABLE_DUMP: u8 = 0x13;
pub const COM_CONNECT_OUT: u8 = 0x14;
pub const COM_REGISTER_SLAVE: u8 = 0x15;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_DAEMON: u8 = 0x1d;
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
pub const COM_RESET_CONNECTION: u8 = 0x1f;
/// MySQL 8.0.
pub const COM_CLONE: u8 = 0x20;
/// MariaDB.
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// COM_SET_OPTION values.
pub const MYSQL_OPTION_MULTI_STATEMENTS_ON: u16 = 0;
pub const MYSQL_OPTION_MULTI_STATEMENTS_OFF: u16 = 1;

/// COM_STMT_EXECUTE flags (cursor types).
pub const CURSOR_TYPE_NO_CURSOR: u8 = 0x00;
pub const CURSOR_TYPE_READ_ONLY: u8 = 0x01;
pub const CURSOR_TYPE_FOR_UPDATE: u8 = 0x02;
pub const CURSOR_TYPE_SCROLLABLE: u8 = 0x04;

/// The protocol name of a command byte (for logs and metrics).
pub fn command_name(command: u8) -> &'static str {
    match command {
        COM_SLEEP => "COM_SLEEP",
        COM_QUIT => "COM_QUIT",
        COM_INIT_DB => "COM_INIT_DB",
        COM_QUERY => "COM_QUERY",
        COM_FIELD_LIST => "COM_FIELD_LIST",
        COM_CREATE_DB => "COM_CREATE_DB",
        COM_DROP_DB => "COM_DROP_DB",
        COM_REFRESH => "COM_REFRESH",
        COM_SHUTDOWN => "COM_SHUTDOWN",
        COM_STATISTICS => "COM_STATISTICS",
        COM_PROCESS_INFO => "COM_PROCESS_INFO",
        COM_CONNECT => "COM_CONNECT",
        COM_PROCESS_KILL => "COM_PROCESS_KILL",
        COM_DEBUG => "COM_DEBUG",
        COM_PING => "COM_PING",
        COM_TIME => "COM_TIME",
        COM_DELAYED_INSERT => "COM_DELAYED_INSERT",
        COM_CHANGE_USER => "COM_CHANGE_USER",
        COM_BINLOG_DUMP => "COM_BINLOG_DUMP",
        COM_TABLE_DUMP => "COM_TABLE_DUMP",
        COM_CONNECT_OUT => "COM_CONNECT_OUT",
        COM_REGISTER_SLAVE => "COM_REGISTER_SLAVE",
        COM_STMT_PREPARE => "COM_STMT_PREPARE",
        COM_STMT_EXECUTE => "COM_STMT_EXECUTE",
        COM_STMT_SEND_LONG_DATA => "COM_STMT_SEND_LONG_DATA",
        COM_STMT_CLOSE => "COM_STMT_CLOSE",
        COM_STMT_RESET => "COM_STMT_RESET",
        COM_SET_OPTION => "COM_SET_OPTION",
        COM_STMT_FETCH => "COM_STMT_FETCH",
        COM_DAEMON => "COM_DAEMON",
        COM_BINLOG_DUMP_GTID => "COM_BINLOG_DUMP_GTID",
        COM_RESET_CONNECTION => "COM_RESET_CONNECTION",
        COM_CLONE => "COM_CLONE",
        COM_STMT_BULK_EXECUTE => "COM_STMT_BULK_EXECUTE",
        _ => "COM_UNKNOWN",
    }
}

fn has_stmt_id(command: u8) -> bool {
    matches!(
        command,
        COM_STMT_EXECUTE
            | COM_STMT_SEND_LONG_DATA
            | COM_STMT_CLOSE
            | COM_STMT_RESET
            | COM_STMT_FETCH
            | COM_STMT_BULK_EXECUTE
    )
}

/// The statement id (bytes 1..5) of COM_STMT_EXECUTE / SEND_LONG_DATA / CLOSE / RESET / FETCH
/// (and MariaDB's BULK_EXECUTE); `None` for other commands or a short payload.
pub fn stmt_id(payload: &[u8]) -> Option<u32> {
    let mut b = payload;
    if !has_stmt_id(read_u8(&mut b)?) {
        return None;
    }
    read_u32(&mut b)
}

/// A copy of `payload` with its statement id replaced (an unchanged copy when `stmt_id` would
/// return `None`).
pub fn with_stmt_id(payload: &[u8], id: u32) -> Vec<u8> {
    let mut out = payload.to_vec();
    if stmt_id(payload).is_some() {
        out[1..5].copy_from_slice(&id.to_le_bytes());
    }
    out
}

/// A zero-copy view of COM_STMT_EXECUTE (without CLIENT_QUERY_ATTRIBUTES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteView<'a> {
    pub stmt_id: u32,
    pub flags: u8,
    pub iterations: u32,
    /// (num_params + 7) / 8 bytes; empty when the statement has no parameters.
    pub null_bitmap: &'a [u8],
    pub new_params_bound: bool,
    /// Two bytes (type, flags) per parameter when `new_params_bound`; empty otherwise.
    pub types: &'a [u8],
    /// The binary parameter values (the rest of the packet).
    pub values: &'a [u8],
}

/// Parse COM_STMT_EXECUTE for a statement with `num_params` parameters.
pub fn parse_execute(payload: &[u8], num_params: u16) -> Option<ExecuteView<'_>> {
    let mut b = payload;
    if read_u8(&mut b)? != COM_STMT_EXECUTE {
        return None;
    }
    let stmt_id = read_u32(&mut b)?;
    let flags = read_u8(&mut b)?;
    let iterations = read_u32(&mut b)?;
    let mut view = ExecuteView {
        stmt_id,
        flags,
        iterations,
        null_bitmap: &[],
        new_params_bound: false,
        types: &[],
        values: &[],
    };
    if num_params == 0 {
        return Some(view);
    }
    let n = usize::from(num_params);
    view.null_bitmap = read_bytes(&mut b, n.div_ceil(8))?;
    view.new_params_bound = match read_u8(&mut b)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    if view.new_params_bound {
        view.types = read_bytes(&mut b, 2 * n)?;
    }
    view.values = b;
    Some(view)
}

/// A copy of COM_STMT_EXECUTE with `new_params_bound = 1` and `types` (2 bytes per parameter)
/// inserted when the original did not bind types; an unchanged copy when it did or when the
/// statement has no parameters. `None` when the payload is malformed or `types` has the wrong
/// length.
pub fn execute_with_types(payload: &[u8], num_params: u16, types: &[u8]) -> Option<Vec<u8>> {
    let view = parse_execute(payload, num_params)?;
    if num_params == 0 || view.new_params_bound {
        return Some(payload.to_vec());
    }
    if types.len() != 2 * usize::from(num_params) {
        return None;
    }
    let head = 10 + view.null_bitmap.len();
    let mut out = Vec::with_capacity(payload.len() + types.len());
    out.put_slice(&payload[..head]);
    out.put_u8(1);
    out.put_slice(types);
    out.put_slice(view.values);
    Some(out)
}

/// A decoded COM_CHANGE_USER.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeUser {
    pub username: String,
    pub auth_response: Vec<u8>,
    /// An empty schema name is `None`.
    pub database: Option<String>,
    pub charset: Option<u16>,
    pub auth_plugin: Option<String>,
    pub attributes: Vec<(String, String)>,
}

/// Parse COM_CHANGE_USER under the session's negotiated `capabilities`.
pub fn parse_change_user(payload: &[u8], capabilities: u32) -> Option<ChangeUser> {
    let mut b = payload;
    if read_u8(&mut b)? != COM_CHANGE_USER {
        return None;
    }
    let username = std::str::from_utf8(read_nul_str(&mut b)?).ok()?.to_owned();
    // COM_CHANGE_USER never uses the lenenc form: 1-byte length or NUL-terminated.
    let auth_caps = capabilities & !caps::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    let auth_response = read_auth_response(&mut b, auth_caps)?.to_vec();
    let db = read_nul_str_lenient(&mut b);
    let database = if db.is_empty() {
        None
    } else {
        Some(std::str::from_utf8(db).ok()?.to_owned())
    };
    let mut out = ChangeUser {
        username,
        auth_response,
        database,
        ..ChangeUser::default()
    };
    if b.is_empty() {
        return Some(out);
    }
    out.charset = Some(read_u16(&mut b)?);
    if capabilities & caps::CLIENT_PLUGIN_AUTH != 0 && !b.is_empty() {
        out.auth_plugin = Some(String::from_utf8_lossy(read_nul_str_lenient(&mut b)).into_owned());
    }
    if capabilities & caps::CLIENT_CONNECT_ATTRS != 0 && !b.is_empty() {
        out.attributes = read_attributes(&mut b)?;
    }
    Some(out)
}

/// Build COM_CHANGE_USER (1-byte auth length under CLIENT_SECURE_CONNECTION, else
/// NUL-terminated); the charset is written when present or when plugin/attributes follow.
pub fn change_user(c: &ChangeUser, capabilities: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + c.username.len() + c.auth_response.len());
    b.put_u8(COM_CHANGE_USER);
    put_nul_str(&mut b, c.username.as_bytes());
    if capabilities & caps::CLIENT_SECURE_CONNECTION != 0 {
        let n = c.auth_response.len().min(255);
        b.put_u8(n as u8);
        b.put_slice(&c.auth_response[..n]);
    } else {
        put_nul_str(&mut b, &c.auth_response);
    }
    put_nul_str(&mut b, c.database.as_deref().unwrap_or("").as_bytes());
    let plugin = capabilities & caps::CLIENT_PLUGIN_AUTH != 0;
    let attrs = capabilities & caps::CLIENT_CONNECT_ATTRS != 0;
    if c.charset.is_some() || plugin || attrs {
        b.put_u16_le(c.charset.unwrap_or(0));
        if plugin {
            put_nul_str(&mut b, c.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if attrs {
            put_attributes(&mut b, &c.attributes);
        }
    }
    b
}

/// A command packet: the command byte then its body (e.g. COM_QUERY + SQL text,
/// COM_STMT_PREPARE + SQL text, COM_PING + nothing).
pub fn command(command: u8, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + body.len());
    b.put_u8(command);
    b.put_slice(body);
    b
}

/// COM_STMT_CLOSE for `stmt_id` (the server sends no reply).
pub fn stmt_close(stmt_id: u32) -> Vec<u8> {
    command(COM_STMT_CLOSE, &stmt_id.to_le_bytes())
}

/// COM_STMT_PREPARE_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrepareOk {
    pub stmt_id: u32,
    pub columns: u16,
    pub params: u16,
    pub warnings: u16,
}

/// Parse COM_STMT_PREPARE_OK (0x00, id, columns, params, filler, warnings). The warning count
/// is optional (0 when absent).
pub fn parse_prepare_ok(payload: &[u8]) -> Option<PrepareOk> {
    let mut b = payload;
    if read_u8(&mut b)? != 0x00 {
        return None;
    }
    let stmt_id = read_u32(&mut b)?;
    let columns = read_u16(&mut b)?;
    let params = read_u16(&mut b)?;
    let warnings = if b.is_empty() {
        0
    } else {
        read_u8(&mut b)?;
        read_u16(&mut b)?
    };
    Some(PrepareOk {
        stmt_id,
        columns,
        params,
        warnings,
    })
}

/// Build the 12-byte COM_STMT_PREPARE_OK.
pub fn prepare_ok(p: &PrepareOk) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.put_u8(0x00);
    b.put_u32_le(p.stmt_id);
    b.put_u16_le(p.columns);
    b.put_u16_le(p.params);
    b.put_u8(0);
    b.put_u16_le(p.warnings);
    b
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
