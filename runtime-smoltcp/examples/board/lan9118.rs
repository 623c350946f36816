//! A smoltcp `phy::Device` for the SMSC LAN9118 Ethernet controller of
//! Arm's MPS2 boards (QEMU's `mps2-an385`/`mps2-an386` map it at
//! 0x4020_0000; `-nic tap,...` joins it to a TAP device on the host).
//!
//! Polled, 32-bit PIO, no interrupts and no DMA: the main loop asks for a
//! frame, the driver copies it out of the RX data FIFO into one buffer; a
//! frame to send is written into the TX data FIFO behind its two command
//! words. No heap, and nothing a frame carries can make it panic: a frame
//! the MAC flags as bad, too short or too long for the buffer is drained
//! from the FIFO word by word and counted in [`Lan9118Stats`].
//!
//! Registers and bits are those of the LAN9118 datasheet (SMSC, rev. 1.5,
//! section 5); only what this driver uses is named.
#![allow(dead_code)]

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Where the MPS2 boards map the controller.
pub const MPS2_BASE: usize = 0x4020_0000;

// Direct registers (byte offsets).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const INT_EN: usize = 0x5c;
const BYTE_TEST: usize = 0x64;
const RX_CFG: usize = 0x6c;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

// MAC registers, behind MAC_CSR_CMD/MAC_CSR_DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_MII_ACC: u32 = 6;
const MAC_MII_DATA: u32 = 7;

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
/// ID_REV's chip ID (high half) for the LAN9118 and its relatives.
const CHIP_IDS: [u32; 5] = [0x0118, 0x0117, 0x0116, 0x0115, 0x9220];
const HW_CFG_SRST: u32 = 1 << 0;
const PMT_CTRL_READY: u32 = 1 << 0;
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const TX_CFG_TX_ON: u32 = 1 << 1;
/// The TX status FIFO may overrun: this driver never reads it.
const TX_CFG_TXSAO: u32 = 1 << 2;
const MII_BUSY: u32 = 1 << 0;
const PHY_BASIC_STATUS: u32 = 1;
const PHY_LINK_UP: u32 = 1 << 2;
// TX command A and B.
const TX_FIRST_SEGMENT: u32 = 1 << 13;
const TX_LAST_SEGMENT: u32 = 1 << 12;
// RX status.
const RX_ERROR_SUMMARY: u32 = 1 << 15;
const RX_FILTER_FAIL: u32 = 1 << 30;

/// Polls of a self-clearing bit before the driver gives up on the chip.
const SPINS: u32 = 100_000;
/// The largest Ethernet frame it sends or takes (no VLAN tag), and its
/// buffers' size: a frame and its 4-byte CRC, in whole words.
pub const MAX_FRAME: usize = 1514;
const BUFFER: usize = 1520;

/// Why [`Lan9118::new`] found no working controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// BYTE_TEST did not read back its fixed pattern: nothing (or
    /// something else) at that address, or the bus is misconfigured.
    NotFound,
    /// ID_REV names another chip.
    UnknownChip(u32),
    /// The soft reset, or a MAC or PHY register access, never finished.
    Timeout,
}

/// What the driver counted; every frame it did not hand to smoltcp is here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lan9118Stats {
    pub received: u32,
    pub sent: u32,
    /// Frames the MAC flagged (CRC, length, collision: the error summary
    /// bit) or that failed its address filter.
    pub rx_bad: u32,
    /// Frames shorter than an Ethernet header or longer than the buffer.
    pub rx_size: u32,
    /// Frames smoltcp asked to send that were too long or found the TX
    /// FIFO without room for them.
    pub tx_dropped: u32,
}

/// The controller, as a smoltcp device of medium Ethernet.
pub struct Lan9118 {
    base: usize,
    rx: [u8; BUFFER],
    tx: [u8; BUFFER],
    stats: Lan9118Stats,
}

impl Lan9118 {
    /// Resets the controller at `base`, sets its MAC address to `mac` and
    /// turns on its transmitter and receiver (unicast to `mac` and
    /// broadcast; no multicast).
    ///
    /// # Safety
    ///
    /// `base` is the address of a LAN9118's register window, which nothing
    /// else touches while the driver lives.
    pub unsafe fn new(base: usize, mac: [u8; 6]) -> Result<Lan9118, Error> {
        let chip = Lan9118 {
            base,
            rx: [0; BUFFER],
            tx: [0; BUFFER],
            stats: Lan9118Stats::default(),
        };
        if chip.read(BYTE_TEST) != BYTE_TEST_VALUE {
            return Err(Error::NotFound);
        }
        let id = chip.read(ID_REV) >> 16;
        if !CHIP_IDS.contains(&id) {
            return Err(Error::UnknownChip(id));
        }
        chip.write(HW_CFG, HW_CFG_SRST);
        chip.wait(HW_CFG, HW_CFG_SRST, 0)?;
        chip.wait(PMT_CTRL, PMT_CTRL_READY, PMT_CTRL_READY)?;
        // Polled: no interrupt sources.
        chip.write(INT_EN, 0);
        chip.mac_write(
            MAC_ADDRL,
            u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        )?;
        chip.mac_write(MAC_ADDRH, u32::from_le_bytes([mac[4], mac[5], 0, 0]))?;
        // RX_CFG 0: no offset before a frame, 4-byte end alignment.
        chip.write(RX_CFG, 0);
        chip.write(TX_CFG, TX_CFG_TX_ON | TX_CFG_TXSAO);
        // Reset leaves the MAC promiscuous; this clears it (exact unicast
        // filtering, broadcast accepted).
        chip.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        Ok(chip)
    }

    pub fn stats(&self) -> &Lan9118Stats {
        &self.stats
    }

    /// Whether the PHY reports a link (QEMU: the netdev's link state).
    pub fn link_up(&mut self) -> bool {
        self.phy_read(PHY_BASIC_STATUS)
            .is_ok_and(|s| s & PHY_LINK_UP != 0)
    }

    fn reg(&self, offset: usize) -> *mut u32 {
        (self.base + offset) as *mut u32
    }

    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: a LAN9118's registers, owned by us.
        unsafe { self.reg(offset).read_volatile() }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.reg(offset).write_volatile(value) }
    }

    /// Waits until `offset`'s bits `mask` read `want`.
    fn wait(&self, offset: usize, mask: u32, want: u32) -> Result<(), Error> {
        for _ in 0..SPINS {
            if self.read(offset) & mask == want {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn mac_write(&self, index: u32, value: u32) -> Result<(), Error> {
        self.wait(MAC_CSR_CMD, MAC_CSR_BUSY, 0)?;
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | index);
        self.wait(MAC_CSR_CMD, MAC_CSR_BUSY, 0)
    }

    fn mac_read(&self, index: u32) -> Result<u32, Error> {
        self.wait(MAC_CSR_CMD, MAC_CSR_BUSY, 0)?;
        self.write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | index);
        self.wait(MAC_CSR_CMD, MAC_CSR_BUSY, 0)?;
        Ok(self.read(MAC_CSR_DATA))
    }

    /// Reads PHY register `reg` of the internal PHY (address 1) over MII.
    fn phy_read(&self, reg: u32) -> Result<u32, Error> {
        let idle = || -> Result<(), Error> {
            for _ in 0..SPINS {
                if self.mac_read(MAC_MII_ACC)? & MII_BUSY == 0 {
                    return Ok(());
                }
            }
            Err(Error::Timeout)
        };
        idle()?;
        self.mac_write(MAC_MII_ACC, (1 << 11) | (reg << 6) | MII_BUSY)?;
        idle()?;
        Ok(self.mac_read(MAC_MII_DATA)? & 0xffff)
    }

    /// Takes the next good frame out of the RX FIFOs into `self.rx`; its
    /// length, or `None` if no good frame is waiting. Bad ones are drained
    /// and counted on the way.
    fn take_frame(&mut self) -> Option<usize> {
        loop {
            // RX_FIFO_INF[23:16]: status words waiting, one per frame.
            if (self.read(RX_FIFO_INF) >> 16) & 0xff == 0 {
                return None;
            }
            let status = self.read(RX_STATUS_FIFO);
            // The frame's length with its CRC, and the FIFO words it takes.
            let len = ((status >> 16) & 0x3fff) as usize;
            let words = len.div_ceil(4);
            let bad = status & (RX_ERROR_SUMMARY | RX_FILTER_FAIL) != 0;
            if bad || len < 14 + 4 || words * 4 > BUFFER {
                // Drained by reading, not RX_DP_CTRL's fast-forward: its
                // rules (at least 4 words, wait for it to clear) differ
                // between chips and emulations.
                for _ in 0..words {
                    let _ = self.read(RX_DATA_FIFO);
                }
                if bad {
                    self.stats.rx_bad = self.stats.rx_bad.wrapping_add(1);
                } else {
                    self.stats.rx_size = self.stats.rx_size.wrapping_add(1);
                }
                continue;
            }
            for i in 0..words {
                let word = self.read(RX_DATA_FIFO).to_le_bytes();
                self.rx[4 * i..4 * i + 4].copy_from_slice(&word);
            }
            self.stats.received = self.stats.received.wrapping_add(1);
            return Some(len - 4);
        }
    }
}

/// Sends `tx[..len]`: command A (one segment holding the whole frame),
/// command B (its length), then the frame in little-endian words.
fn send(chip: &Lan9118Regs, tx: &[u8], stats: &mut Lan9118Stats) {
    let len = tx.len();
    // TX_FIFO_INF[15:0]: free bytes in the TX data FIFO.
    let free = (chip.read(TX_FIFO_INF) & 0xffff) as usize;
    if len == 0 || len > MAX_FRAME || free < len.div_ceil(4) * 4 + 8 {
        stats.tx_dropped = stats.tx_dropped.wrapping_add(1);
        return;
    }
    chip.write(
        TX_DATA_FIFO,
        TX_FIRST_SEGMENT | TX_LAST_SEGMENT | len as u32,
    );
    chip.write(TX_DATA_FIFO, len as u32);
    let mut words = tx.chunks_exact(4);
    for word in &mut words {
        chip.write(
            TX_DATA_FIFO,
            u32::from_le_bytes([word[0], word[1], word[2], word[3]]),
        );
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0; 4];
        last[..rest.len()].copy_from_slice(rest);
        chip.write(TX_DATA_FIFO, u32::from_le_bytes(last));
    }
    stats.sent = stats.sent.wrapping_add(1);
}

/// The register window alone, for the tokens (which borrow the buffers).
struct Lan9118Regs {
    base: usize,
}

impl Lan9118Regs {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `Lan9118::new`'s contract: a LAN9118's registers, owned
        // by the driver the token came from.
        unsafe { ((self.base + offset) as *const u32).read_volatile() }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.base + offset) as *mut u32).write_volatile(value) }
    }
}

pub struct RxToken<'a>(&'a [u8]);

pub struct TxToken<'a> {
    regs: Lan9118Regs,
    buf: &'a mut [u8; BUFFER],
    stats: &'a mut Lan9118Stats,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never asks for more than the MTU; a longer request gets
        // the buffer's worth and is dropped (counted) rather than sent cut.
        let r = f(&mut self.buf[..len.min(BUFFER)]);
        if len > MAX_FRAME {
            self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(1);
        } else {
            send(&self.regs, &self.buf[..len], self.stats);
        }
        r
    }
}

impl Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.take_frame()?;
        let regs = Lan9118Regs { base: self.base };
        Some((
            RxToken(&self.rx[..len]),
            TxToken {
                regs,
                buf: &mut self.tx,
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            regs: Lan9118Regs { base: self.base },
            buf: &mut self.tx,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps
    }
}
