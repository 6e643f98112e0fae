//! A raw PostgreSQL protocol client for tests that must see messages a driver hides
//! (BackendKeyData, NotificationResponse pids, ParameterStatus names): md5 login as the proxy's
//! `mdapp` user, one message at a time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use switchyard::wire::pg::auth::md5_response;
use switchyard::wire::pg::msg;

use super::proxy::MDAPP_PASSWORD;

/// Log in to the proxy at `port` as `mdapp` (md5); the socket after ReadyForQuery and the
/// greeting's messages (tag, body) before it. Panics when the login is refused.
pub fn mdapp_login(port: u16) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    md5_login(port, "mdapp", MDAPP_PASSWORD)
}

/// Log in to database `app` at `port` as `user` with md5 (the proxy's `mdapp`, or the
/// cluster's `md5user` directly).
pub fn md5_login(port: u16, user: &str, password: &str) -> (TcpStream, Vec<(u8, Vec<u8>)>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", "app")] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut start = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    start.extend_from_slice(&body);
    s.write_all(&start).unwrap();
    let (tag, body) = read_msg(&mut s);
    assert_eq!(tag, b'R');
    let salt: [u8; 4] = body[4..8].try_into().unwrap();
    let resp = md5_response(user, password, salt);
    let mut data = resp.into_bytes();
    data.push(0);
    s.write_all(&msg::password(&data)).unwrap();
    let mut greeting = Vec::new();
    loop {
        let (tag, body) = read_msg(&mut s);
        match tag {
            b'Z' => return (s, greeting),
            _ => {
                assert_ne!(tag, b'E', "login refused");
                greeting.push((tag, body));
            }
        }
    }
}

/// One message: its tag and body.
pub fn read_msg(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).unwrap();
    let len = i32::from_be_bytes(head[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).unwrap();
    (head[0], body)
}
