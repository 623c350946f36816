//! What each role is, in one table: the facts the node reads off
//! [`Role`] instead of matching on it where it needs them.

use super::*;
use crate::ip::l3::IpNet;
use crate::node::config::OwnSocket;

/// A role and what it should say of itself: its mode, its half, whether
/// the peer may send first, whether its frames carry channel numbers and
/// sequence numbers, whether it hears an exit's refusals, its own socket.
type Facts = (Role, Mode, Half, bool, bool, bool, bool, Option<OwnSocket>);

#[test]
fn each_role_states_its_mode_half_frames_and_socket() {
    let listen: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let target: SocketAddr = "127.0.0.9:53".parse().unwrap();
    let bind = Some(OwnSocket::Bind(listen));
    let connect = Some(OwnSocket::Connect(target));
    let net: IpNet = "10.0.0.2/32".parse().unwrap();
    let mut peer_addresses = heapless::Vec::new();
    peer_addresses.push(net).unwrap();
    let rows: [Facts; 9] = [
        (
            Role::Direct {
                listen,
                customer: target,
            },
            Mode::Direct,
            Half::Both,
            true,
            false,
            false,
            false,
            bind,
        ),
        (
            Role::ForwardEntry { listen },
            Mode::Forward,
            Half::Entry,
            false,
            true,
            false,
            true,
            bind,
        ),
        (
            Role::ForwardExit { target },
            Mode::Forward,
            Half::Exit,
            true,
            true,
            false,
            false,
            None,
        ),
        (
            Role::PushEntry { listen },
            Mode::Push,
            Half::Entry,
            false,
            false,
            true,
            false,
            bind,
        ),
        (
            Role::PushExit { target },
            Mode::Push,
            Half::Exit,
            true,
            false,
            true,
            false,
            connect,
        ),
        (
            Role::RouterEntry,
            Mode::Router,
            Half::Entry,
            false,
            true,
            false,
            true,
            None,
        ),
        (
            Role::RouterExit {
                allow: AllowList::new(),
            },
            Mode::Router,
            Half::Exit,
            true,
            true,
            false,
            false,
            None,
        ),
        (
            Role::RouterTunEntry,
            Mode::Router,
            Half::Entry,
            false,
            false,
            false,
            false,
            None,
        ),
        (
            Role::RouterTunExit {
                allow: AllowList::new(),
                peer_addresses,
            },
            Mode::Router,
            Half::Exit,
            true,
            false,
            false,
            false,
            None,
        ),
    ];
    for (role, mode, half, first, channels, sequences, refusals, socket) in rows {
        assert_eq!(role.mode(), mode, "{role:?}");
        assert_eq!(role.half(), half, "{role:?}");
        assert_eq!(role.peer_may_send_first(), first, "{role:?}");
        assert_eq!(role.has_channels(), channels, "{role:?}");
        assert_eq!(role.has_sequences(), sequences, "{role:?}");
        assert_eq!(role.hears_refusals(), refusals, "{role:?}");
        assert_eq!(role.own_socket(), socket, "{role:?}");
        assert_eq!(
            role.is_l3(),
            matches!(role, Role::RouterTunEntry | Role::RouterTunExit { .. }),
            "{role:?}"
        );
    }
}
