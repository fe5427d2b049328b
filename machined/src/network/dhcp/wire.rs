//! Decoding a datagram that arrived on port 68, before the state machine
//! sees it.
//!
//! `dhcproto` checks the length of a few fixed-size options with
//! `debug_assert!` instead of refusing them: Rapid Commit (80, empty),
//! Client FQDN (81, at least 3 bytes), Client Network Interface (94, 3) and
//! the bulk lease query times (152–155, 4). A reply carrying one with
//! another length panicked a debug build of the receive loop (found by the
//! `dhcp_client` fuzz target); a release build read past the option
//! instead. Those lengths are checked here first, over the options as
//! `dhcproto` groups them (RFC 3396: consecutive options with one code are
//! one option), and such a reply is refused.

use dhcproto::v4::Message;
use dhcproto::{Decodable, Decoder};

/// Where the options start: the fixed BOOTP header, then the magic cookie.
const OPTIONS_AT: usize = 236 + 4;
const PAD: u8 = 0;
const END: u8 = 255;

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("option {code} is {len} bytes long, which it cannot be")]
    OptionLength { code: u8, len: usize },
    #[error("{0}")]
    Decode(#[from] dhcproto::error::DecodeError),
}

/// Whether `dhcproto` would assert on option `code` of `len` bytes.
fn asserted(code: u8, len: usize) -> bool {
    match code {
        80 => len != 0,
        81 => len < 3,
        94 => len != 3,
        152..=155 => len != 4,
        _ => false,
    }
}

/// The first option (code and total length, continuations included) whose
/// length `dhcproto` would assert on.
fn bad_option(bytes: &[u8]) -> Option<(u8, usize)> {
    let mut at = OPTIONS_AT;
    // The option being read: its code and length so far.
    let mut open: Option<(u8, usize)> = None;
    while let Some(&code) = bytes.get(at) {
        if code == PAD || code == END {
            if let Some((c, len)) = open.take()
                && asserted(c, len)
            {
                return Some((c, len));
            }
            if code == END {
                return None;
            }
            at += 1;
            continue;
        }
        // A code in the datagram's last byte has no length: dhcproto still
        // decodes the option before it (found by the 10-minute fuzz run).
        let Some(&len) = bytes.get(at + 1) else {
            break;
        };
        let len = usize::from(len);
        open = match open {
            Some((c, total)) if c == code => Some((c, total + len)),
            Some((c, total)) if asserted(c, total) => return Some((c, total)),
            _ => Some((code, len)),
        };
        at += 2 + len;
    }
    open.filter(|&(c, len)| asserted(c, len))
}

/// Decode a reply, refusing the option lengths `dhcproto` asserts on.
pub fn decode_reply(bytes: &[u8]) -> Result<Message, ReplyError> {
    if let Some((code, len)) = bad_option(bytes) {
        return Err(ReplyError::OptionLength { code, len });
    }
    Ok(Message::decode(&mut Decoder::new(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, MessageType, Opcode, OptionCode};
    use dhcproto::{Encodable, Encoder};
    use std::net::Ipv4Addr;

    /// An OFFER with `extra` raw option bytes before the end option.
    fn offer_with(extra: &[u8]) -> Vec<u8> {
        let u = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(7, u, Ipv4Addr::new(10, 0, 0, 50), u, u, &[1; 6]);
        m.set_opcode(Opcode::BootReply);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Offer));
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        assert_eq!(buf.pop(), Some(END));
        buf.extend_from_slice(extra);
        buf.push(END);
        buf
    }

    #[test]
    fn options_dhcproto_asserts_on_are_refused() {
        // Each panicked `Message::decode` in a debug build.
        for extra in [
            &[155, 1, 0][..],
            &[152, 5, 0, 0, 0, 0, 0],
            &[80, 1, 0],
            &[81, 2, 0, 0],
            &[94, 0],
            // Split in two (RFC 3396): 2 + 3 bytes make a 5-byte option.
            &[153, 2, 0, 0, 153, 3, 0, 0, 0],
        ] {
            let e = decode_reply(&offer_with(extra)).expect_err(&format!("{extra:?}"));
            assert!(matches!(e, ReplyError::OptionLength { .. }), "{e}");
        }
        // Last in the datagram, without an end option.
        let mut bytes = offer_with(&[]);
        bytes.pop();
        bytes.extend_from_slice(&[154, 1, 0]);
        let e = decode_reply(&bytes).expect_err("unterminated");
        assert!(
            matches!(e, ReplyError::OptionLength { code: 154, len: 1 }),
            "{e}"
        );
        // Followed by a lone code in the datagram's last byte, no length:
        // dhcproto decodes the option before it all the same.
        let mut bytes = offer_with(&[]);
        bytes.pop();
        bytes.extend_from_slice(&[80, 1, 0, 225]);
        let e = decode_reply(&bytes).expect_err("lone code at the end");
        assert!(
            matches!(e, ReplyError::OptionLength { code: 80, len: 1 }),
            "{e}"
        );
    }

    #[test]
    fn well_formed_options_still_decode() {
        for extra in [
            &[155, 4, 0, 0, 0, 9][..],
            &[80, 0],
            &[81, 3, 0, 0, 0],
            &[94, 3, 1, 2, 3],
            &[153, 2, 0, 0, 153, 2, 0, 1],
            &[],
        ] {
            let msg = decode_reply(&offer_with(extra)).expect("decodes");
            assert_eq!(msg.opts().msg_type(), Some(MessageType::Offer), "{extra:?}");
        }
        let msg = decode_reply(&offer_with(&[155, 4, 0, 0, 0, 9])).unwrap();
        assert_eq!(
            msg.opts().get(OptionCode::BulkLeaseQueryQueryEndTime),
            Some(&DhcpOption::BulkLeaseQueryQueryEndTime(9))
        );
    }
}
