//! Interoperability with `snow`, an independent Noise implementation, and the
//! ways a handshake must fail.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PARAMS: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";

fn secret(rng: &mut ChaCha20Rng) -> StaticSecret {
    StaticSecret::random_from_rng(rng)
}

fn public(s: &StaticSecret) -> [u8; 32] {
    DalekPublic::from(s).to_bytes()
}

fn snow_builder<'a>(local: &'a [u8; 32], psk: &'a [u8; 32]) -> snow::Builder<'a> {
    snow::Builder::new(PARAMS.parse().unwrap())
        .local_private_key(local)
        .prologue(PROLOGUE)
        .psk(2, psk)
}

/// Seals `pt` with a transport key and counter the way sdt's data frames do.
fn seal(key: &[u8; 32], counter: u64, pt: &[u8]) -> Vec<u8> {
    let mut buf = pt.to_vec();
    let tag = Aead::new(key).seal(counter, &[], &mut buf);
    buf.extend_from_slice(&tag);
    buf
}

fn open(key: &[u8; 32], counter: u64, ct: &[u8]) -> Result<Vec<u8>, crypto::AuthFailed> {
    let (body, tag) = ct.split_at(ct.len() - TAG_LEN);
    let mut buf = body.to_vec();
    Aead::new(key).open(counter, &[], &mut buf, tag.try_into().unwrap())?;
    Ok(buf)
}

#[test]
fn our_initiator_with_snow_responder() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (ours, theirs) = (secret(&mut rng), secret(&mut rng));
    let psk = [0x5a; 32];
    let mut snow_resp = snow_builder(&theirs.to_bytes(), &psk)
        .build_responder()
        .unwrap();

    let mut msg1 = [0u8; 256];
    let (init, len) = Initiator::write_message(
        &ours,
        &public(&theirs),
        secret(&mut rng),
        b"hello snow",
        &mut msg1,
    )
    .unwrap();
    assert_eq!(len, MSG1_OVERHEAD + 10);
    let mut payload = [0u8; 64];
    let n = snow_resp.read_message(&msg1[..len], &mut payload).unwrap();
    assert_eq!(&payload[..n], b"hello snow");
    assert_eq!(snow_resp.get_remote_static().unwrap(), public(&ours));

    let mut msg2 = [0u8; 256];
    let len2 = snow_resp.write_message(b"hi sdt", &mut msg2).unwrap();
    assert_eq!(len2, MSG2_OVERHEAD + 6);
    let (keys, range) = init.read_message(&ours, &psk, &mut msg2[..len2]).unwrap();
    assert_eq!(&msg2[range], b"hi sdt");

    let snow_t = snow_resp.into_stateless_transport_mode().unwrap();
    let (send, recv) = keys.for_initiator();
    // Transport messages with explicit, out-of-order counters both ways.
    for counter in [0u64, 1, 7, 3, 1 << 40] {
        let ct = seal(send, counter, b"datagram to snow");
        let mut out = [0u8; 64];
        let n = snow_t.read_message(counter, &ct, &mut out).unwrap();
        assert_eq!(&out[..n], b"datagram to snow");

        let n = snow_t
            .write_message(counter, b"datagram from snow", &mut out)
            .unwrap();
        assert_eq!(
            open(recv, counter, &out[..n]).unwrap(),
            b"datagram from snow"
        );
    }
}

#[test]
fn snow_initiator_with_our_responder() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (ours, theirs) = (secret(&mut rng), secret(&mut rng));
    let psk = [0xa5; 32];
    let mut snow_init = snow_builder(&theirs.to_bytes(), &psk)
        .remote_public_key(&public(&ours))
        .build_initiator()
        .unwrap();

    let mut msg1 = [0u8; 256];
    let len = snow_init.write_message(b"timestamp!!!", &mut msg1).unwrap();
    let (resp, range) = Responder::read_message(&ours, &mut msg1[..len]).unwrap();
    assert_eq!(&msg1[range], b"timestamp!!!");
    assert_eq!(resp.remote_static(), &public(&theirs));

    let mut msg2 = [0u8; 128];
    let (keys, len2) = resp
        .write_message(secret(&mut rng), &psk, &[], &mut msg2)
        .unwrap();
    assert_eq!(len2, MSG2_OVERHEAD);
    let mut payload = [0u8; 16];
    assert_eq!(
        snow_init.read_message(&msg2[..len2], &mut payload).unwrap(),
        0
    );

    let snow_t = snow_init.into_stateless_transport_mode().unwrap();
    let (send, recv) = keys.for_responder();
    let mut out = [0u8; 64];
    let n = snow_t.write_message(5, b"ping", &mut out).unwrap();
    assert_eq!(open(recv, 5, &out[..n]).unwrap(), b"ping");
    let ct = seal(send, 9, b"pong");
    let n = snow_t.read_message(9, &ct, &mut out).unwrap();
    assert_eq!(&out[..n], b"pong");
}

/// A full handshake between two instances of this module.
fn handshake(
    init_s: &StaticSecret,
    resp_s: &StaticSecret,
    resp_pub_known: &[u8; 32],
    psk_i: &[u8; 32],
    psk_r: &[u8; 32],
    rng: &mut ChaCha20Rng,
) -> Result<(TransportKeys, TransportKeys), NoiseError> {
    let mut m1 = [0u8; 200];
    let (init, l1) = Initiator::write_message(init_s, resp_pub_known, secret(rng), b"ts", &mut m1)?;
    let (resp, _) = Responder::read_message(resp_s, &mut m1[..l1])?;
    let mut m2 = [0u8; 200];
    let (rk, l2) = resp.write_message(secret(rng), psk_r, &[], &mut m2)?;
    let (ik, _) = init.read_message(init_s, psk_i, &mut m2[..l2])?;
    Ok((ik, rk))
}

#[test]
fn self_handshake_agrees_on_keys() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let (a, b) = (secret(&mut rng), secret(&mut rng));
    let (ik, rk) = handshake(&a, &b, &public(&b), &[0; 32], &[0; 32], &mut rng).unwrap();
    assert_eq!(ik.for_initiator().0, rk.for_responder().1);
    assert_eq!(ik.for_initiator().1, rk.for_responder().0);
    assert_ne!(ik.for_initiator().0, ik.for_initiator().1);
}

#[test]
fn wrong_responder_key_fails_at_responder() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let (a, b, c) = (secret(&mut rng), secret(&mut rng), secret(&mut rng));
    // The initiator believes the responder is `c`; `b` answers.
    let r = handshake(&a, &b, &public(&c), &[0; 32], &[0; 32], &mut rng);
    assert_eq!(r.err(), Some(NoiseError::Decrypt));
}

#[test]
fn wrong_psk_fails_at_initiator() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (a, b) = (secret(&mut rng), secret(&mut rng));
    let r = handshake(&a, &b, &public(&b), &[1; 32], &[2; 32], &mut rng);
    assert_eq!(r.err(), Some(NoiseError::Decrypt));
}

#[test]
fn forged_reply_does_not_spoil_the_handshake() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let (a, b) = (secret(&mut rng), secret(&mut rng));
    let mut m1 = [0u8; 200];
    let (init, l1) =
        Initiator::write_message(&a, &public(&b), secret(&mut rng), &[], &mut m1).unwrap();
    let (resp, _) = Responder::read_message(&b, &mut m1[..l1]).unwrap();
    let mut m2 = [0u8; 200];
    let (_, l2) = resp
        .write_message(secret(&mut rng), &[0; 32], &[], &mut m2)
        .unwrap();
    for bit in 0..l2 * 8 {
        let mut forged = m2;
        forged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            init.read_message(&a, &[0; 32], &mut forged[..l2]).is_err(),
            "bit {bit}"
        );
    }
    assert!(init.read_message(&a, &[0; 32], &mut m2[..l2]).is_ok());
}

#[test]
fn tampered_initiation_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (a, b) = (secret(&mut rng), secret(&mut rng));
    let mut m1 = [0u8; 200];
    let (_, l1) =
        Initiator::write_message(&a, &public(&b), secret(&mut rng), b"x", &mut m1).unwrap();
    for bit in 0..l1 * 8 {
        let mut forged = m1;
        forged[bit / 8] ^= 1 << (bit % 8);
        assert!(
            Responder::read_message(&b, &mut forged[..l1]).is_err(),
            "bit {bit}"
        );
    }
}

#[test]
fn low_order_ephemeral_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let b = secret(&mut rng);
    // The all-zero point is of low order: DH with it is all zeros.
    let mut m1 = [0u8; MSG1_OVERHEAD];
    assert_eq!(
        Responder::read_message(&b, &mut m1).err(),
        Some(NoiseError::LowOrderPoint)
    );
}

#[test]
fn short_inputs_and_buffers_are_errors() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let (a, b) = (secret(&mut rng), secret(&mut rng));
    let mut small = [0u8; MSG1_OVERHEAD - 1];
    let r = Initiator::write_message(&a, &public(&b), secret(&mut rng), &[], &mut small);
    assert_eq!(r.err(), Some(NoiseError::BufferTooSmall));
    for len in 0..MSG1_OVERHEAD {
        let mut m = [0u8; MSG1_OVERHEAD];
        assert_eq!(
            Responder::read_message(&b, &mut m[..len]).err(),
            Some(NoiseError::Truncated)
        );
    }
    let mut m1 = [0u8; 200];
    let (init, _) =
        Initiator::write_message(&a, &public(&b), secret(&mut rng), &[], &mut m1).unwrap();
    for len in 0..MSG2_OVERHEAD {
        let mut m = [0u8; MSG2_OVERHEAD];
        assert_eq!(
            init.read_message(&a, &[0; 32], &mut m[..len]).err(),
            Some(NoiseError::Truncated)
        );
    }
}
