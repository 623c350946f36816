//! Time on the MPS2 board in real time, for a firmware that talks to peers
//! off the chip: a monotonic clock from the CMSDK APB timer 0, a SysTick
//! interrupt every millisecond to wake the core from `WFI`, and the
//! wall-clock time at boot over semihosting.
//!
//! Why these: without `-icount`, QEMU runs its virtual clock at the host's
//! pace, and both timers count it at the board's 25 MHz. SysTick alone has
//! 24 bits (0.67 s), short enough that a long poll (a handshake's crypto)
//! could miss a wrap; the CMSDK timer's 32 bits last 171 s and are extended
//! to 64 here on every read. Semihosting's `SYS_ELAPSED` would also do but
//! needs a debugger attached on a real board, where a timer is always
//! there. The wall clock (`SYS_TIME`, whole seconds of the host, read as
//! the second ticks over) stands for an RTC.
#![allow(dead_code)]

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

/// CMSDK APB timer 0 on the MPS2 boards, and its clock.
const TIMER0: usize = 0x4000_0000;
const CTRL: usize = 0x0;
const VALUE: usize = 0x4;
const RELOAD: usize = 0x8;
const CTRL_ENABLE: u32 = 1 << 0;
const HZ: u64 = 25_000_000;

/// The clock, with the state that extends the timer to 64 bits.
pub struct Clock {
    last: u32,
    high: u64,
}

impl Clock {
    /// Starts timer 0 counting down from 2^32 - 1, and SysTick
    /// interrupting every millisecond (its handler does nothing: the
    /// interrupt only ends a `WFI`).
    pub fn start(syst: &mut SYST) -> Clock {
        let reg = |offset: usize| (TIMER0 + offset) as *mut u32;
        // SAFETY: the CMSDK timer 0 of the MPS2 boards; nothing else in the
        // firmware touches it.
        unsafe {
            reg(CTRL).write_volatile(0);
            reg(RELOAD).write_volatile(u32::MAX);
            reg(VALUE).write_volatile(u32::MAX);
            reg(CTRL).write_volatile(CTRL_ENABLE);
        }
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload((HZ / 1000) as u32 - 1);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Clock { last: 0, high: 0 }
    }

    /// Ticks of 25 MHz since `start`; right as long as it is called at
    /// least every 171 s (the main loop calls it every millisecond).
    fn ticks(&mut self) -> u64 {
        // SAFETY: as in `start`; a read has no side effect.
        let value = unsafe { ((TIMER0 + VALUE) as *const u32).read_volatile() };
        let up = u32::MAX - value;
        if up < self.last {
            self.high += 1 << 32;
        }
        self.last = up;
        self.high | u64::from(up)
    }

    /// Now, for smoltcp and the node.
    pub fn now(&mut self) -> smoltcp::time::Instant {
        let micros = self.ticks() / (HZ / 1_000_000);
        smoltcp::time::Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

/// Seconds since the Unix epoch, from the host over semihosting
/// (`SYS_TIME`); 0 if the host does not answer.
pub fn unix_seconds() -> u64 {
    // SAFETY: SYS_TIME takes no argument and touches no memory of ours.
    let secs = unsafe { cortex_m_semihosting::syscall!(TIME) };
    secs as u64
}

/// The wall-clock time, in nanoseconds since the Unix epoch, and the
/// clock's instant it belongs to: taken when the host's second ticks over,
/// so that it is exact to a millisecond though `SYS_TIME` counts whole
/// seconds. Waits up to a second.
///
/// Exact matters: handshake timestamps are this plus the time since, and
/// the peer ignores a handshake older than the last it took. Rounding the
/// second down would put the timestamps of a board reset within a second
/// of booting behind those of the boot before; rounding up would put those
/// of the boot before ahead of the time.
pub fn wall_clock(clock: &mut Clock) -> (smoltcp::time::Instant, u64) {
    let first = unix_seconds();
    loop {
        let secs = unix_seconds();
        let now = clock.now();
        if secs != first {
            return (now, secs.saturating_mul(1_000_000_000));
        }
        sleep();
    }
}

/// Sleeps until the next interrupt: SysTick within a millisecond.
pub fn sleep() {
    cortex_m::asm::wfi();
}

#[cortex_m_rt::exception]
fn SysTick() {}
