//! What customers send: every payload names itself, so the harness can tell
//! who sent each datagram that arrives anywhere.
//!
//! A request is `Q|sender|seq|padding`, an answer (a target echoing a
//! request) is `A|sender|seq|orig-sender|orig-seq|padding`. The id is
//! `(sender, seq)`: unique over a run, since each customer counts its own
//! datagrams. The padding gives datagrams varied sizes; it is `.` bytes so
//! traces stay readable. Anything that does not parse was not sent by a
//! customer.

use core::fmt;

/// A datagram's identity: its sender's host name and sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    /// Host name of the customer that sent it.
    pub sender: String,
    /// The sender's count of its own datagrams.
    pub seq: u32,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.sender, self.seq)
    }
}

/// A parsed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// This datagram's id.
    pub id: MsgId,
    /// For an answer, the request it answers.
    pub answers: Option<MsgId>,
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.answers {
            None => write!(f, "Q {}", self.id),
            Some(orig) => write!(f, "A {} re {}", self.id, orig),
        }
    }
}

impl Payload {
    /// The bytes of this payload followed by `pad` padding bytes.
    pub fn encode(&self, pad: usize) -> Vec<u8> {
        let mut s = match &self.answers {
            None => format!("Q|{}|{}|", self.id.sender, self.id.seq),
            Some(o) => format!(
                "A|{}|{}|{}|{}|",
                self.id.sender, self.id.seq, o.sender, o.seq
            ),
        }
        .into_bytes();
        s.resize(s.len() + pad, b'.');
        s
    }

    /// Parses what [`Payload::encode`] wrote; `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Payload> {
        let text = core::str::from_utf8(bytes).ok()?;
        let mut parts = text.split('|');
        let kind = parts.next()?;
        let id = parse_id(parts.next()?, parts.next()?)?;
        let answers = match kind {
            "Q" => None,
            "A" => Some(parse_id(parts.next()?, parts.next()?)?),
            _ => return None,
        };
        let padding = parts.next()?;
        if parts.next().is_some() || padding.bytes().any(|b| b != b'.') {
            return None;
        }
        Some(Payload { id, answers })
    }
}

fn parse_id(sender: &str, seq: &str) -> Option<MsgId> {
    let valid = !sender.is_empty()
        && sender
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(MsgId {
        sender: sender.to_string(),
        seq: seq.parse().ok()?,
    })
}

/// A short printable form of any bytes: the payload if it parses, else a
/// hex prefix.
pub fn describe(bytes: &[u8]) -> String {
    match Payload::parse(bytes) {
        Some(p) => p.to_string(),
        None => {
            let hex: String = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("<{} bytes {hex}..>", bytes.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let q = Payload {
            id: MsgId {
                sender: "alice-3".into(),
                seq: 17,
            },
            answers: None,
        };
        let a = Payload {
            id: MsgId {
                sender: "bob-0".into(),
                seq: 2,
            },
            answers: Some(q.id.clone()),
        };
        for p in [q, a] {
            for pad in [0, 1, 100] {
                assert_eq!(Payload::parse(&p.encode(pad)), Some(p.clone()));
            }
        }
        assert_eq!(Payload::parse(b"Q|alice-3|17|x"), None);
        assert_eq!(Payload::parse(b"Q|alice-3|17"), None);
        assert_eq!(Payload::parse(b"\x01\x02"), None);
        assert_eq!(Payload::parse(b"A|bob|1|alice|2|.|"), None);
    }
}
