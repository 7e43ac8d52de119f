//! The `mysql_native_password` hash of a password: what MySQL stores and what the planner compares.

use sha1::{Digest, Sha1};

/// The `mysql_native_password` hash: `*` + upper-case hex(SHA1(SHA1(password))), the form
/// `mysql.user.authentication_string` holds and `IDENTIFIED BY PASSWORD` takes.
pub fn native_hash(password: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    let mut s = String::with_capacity(41);
    s.push('*');
    for b in outer {
        s.push(char::from(HEX[(b >> 4) as usize]));
        s.push(char::from(HEX[(b & 0xf) as usize]));
    }
    s
}
