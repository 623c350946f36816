//! What the firmware examples take from the board: a report channel, an
//! exit status, an instruction counter and a stack high-water mark.
//!
//! On the target (QEMU's `mps2-an386`, a Cortex-M4F) the report goes out
//! over semihosting, which QEMU prints on its stdout
//! (`-semihosting-config enable=on,target=native`), and the exit status
//! becomes QEMU's. Costs come from SysTick counting the core clock; run
//! under `-icount shift=0` QEMU advances its clock by exactly one
//! nanosecond per instruction, so a calibration loop of known length turns
//! ticks into instructions. These are *emulated instruction counts*, not
//! the cycles of a real Cortex-M4: a real core spends more than one cycle on
//! loads, stores, taken branches, multiply-accumulates and flash wait
//! states.
//!
//! On the host the same examples run with `println!`, and costs are
//! nanoseconds of the host's monotonic clock.
#![allow(dead_code)]

#[cfg(target_os = "none")]
pub use target::*;

#[cfg(not(target_os = "none"))]
pub use host::*;

#[cfg(target_os = "none")]
mod target {
    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::SYST;

    /// Prints a line of the report (with `core::fmt`: the budgeted
    /// firmware uses [`write`] instead).
    #[allow(unused_macros)]
    macro_rules! report {
        ($($arg:tt)*) => { cortex_m_semihosting::hprintln!($($arg)*) };
    }
    #[allow(unused_imports)]
    pub(crate) use report;

    /// SysTick is a 24-bit down-counter.
    const WRAP: u32 = 1 << 24;

    /// Words of the stack painted at boot, below the boot-time stack
    /// pointer: the most stack a high-water mark can see.
    const PAINT_WORDS: usize = 64 * 1024;
    const PAINT: u32 = 0xA5A5_5A5A;

    /// The board's clock and the stack window painted at boot.
    pub struct Board {
        /// Instructions per 2^16 SysTick ticks, from the calibration loop.
        per_tick_q16: u64,
        paint_low: *const u32,
        paint_high: *const u32,
    }

    impl Board {
        /// Paints the stack, starts SysTick and calibrates it. Call once,
        /// first thing in `main`.
        pub fn take() -> Board {
            let (paint_low, paint_high) = paint_stack(PAINT_WORDS);
            let mut p = cortex_m::Peripherals::take().expect("peripherals taken twice");
            p.SYST.set_clock_source(SystClkSource::Core);
            p.SYST.set_reload(WRAP - 1);
            p.SYST.clear_current();
            p.SYST.enable_counter();
            let mut board = Board {
                per_tick_q16: 0,
                paint_low,
                paint_high,
            };
            // 2 instructions per turn (subs, bne): 4 M instructions.
            const TURNS: u32 = 2_000_000;
            let start = board.now();
            spin(TURNS);
            let ticks = board.since(start).max(1);
            board.per_tick_q16 = ((2 * TURNS as u64) << 16) / ticks;
            board
        }

        /// Paints the stack for [`Board::stack_peak`] and leaves SysTick
        /// alone, for a firmware that runs it itself ([`Board::now`] and
        /// the costs are then meaningless). Call once, first thing in
        /// `main`.
        pub fn stack_only() -> Board {
            let (paint_low, paint_high) = paint_stack(PAINT_WORDS);
            Board {
                per_tick_q16: 0,
                paint_low,
                paint_high,
            }
        }

        /// A SysTick reading, for [`Board::since`].
        pub fn now(&self) -> u32 {
            SYST::get_current()
        }

        /// Ticks since `start`: right for intervals shorter than 2^24 ticks
        /// (670 M instructions at QEMU's 25 MHz SysTick with `-icount
        /// shift=0`), far longer than any one poll.
        pub fn since(&self, start: u32) -> u64 {
            (start.wrapping_sub(self.now()) & (WRAP - 1)) as u64
        }

        /// `ticks` in instructions.
        pub fn cost(&self, ticks: u64) -> u64 {
            (ticks * self.per_tick_q16) >> 16
        }

        /// The unit of [`Board::cost`].
        pub const UNIT: &'static str = "instructions";

        /// Instructions per SysTick tick, as calibrated (40 under `-icount
        /// shift=0`: 1 ns per instruction, a 25 MHz SysTick).
        pub fn per_tick(&self) -> u64 {
            self.per_tick_q16 >> 16
        }

        /// Paints `words` words below the current stack pointer afresh, so
        /// that [`Board::stack_peak`] sees the deepest the stack goes from
        /// here on.
        #[inline(never)]
        pub fn repaint(&mut self, words: usize) {
            (self.paint_low, self.paint_high) = paint_stack(words);
        }

        /// The deepest the stack has been since boot or the last
        /// [`Board::repaint`], in bytes from the top of RAM, as far as the
        /// painted window sees (`None`: it went past the window).
        pub fn stack_peak(&self) -> Option<usize> {
            let mut p = self.paint_low;
            while p < self.paint_high {
                // SAFETY: the window lies between the end of the statics
                // and the live stack (see `paint_stack`); reading it races
                // with nothing (single core, no interrupts).
                if unsafe { p.read_volatile() } != PAINT {
                    break;
                }
                p = p.wrapping_add(1);
            }
            if p == self.paint_low {
                return None;
            }
            Some(stack_top() - p as usize)
        }
    }

    impl Board {
        /// The deepest the stack has been below the stack pointer of the
        /// last [`Board::repaint`], in bytes (`None`: past the window).
        pub fn depth(&self) -> Option<usize> {
            let peak = self.stack_peak()?;
            Some(peak.saturating_sub(stack_top() - self.paint_high as usize))
        }
    }

    fn stack_top() -> usize {
        extern "C" {
            static _stack_start: u32;
        }
        // Only the address of the linker symbol is taken.
        core::ptr::addr_of!(_stack_start) as usize
    }

    /// Paints `words` words below the current stack pointer (less a margin
    /// for this function's own frame), never below the end of the statics.
    #[inline(always)]
    fn paint_stack(words: usize) -> (*const u32, *const u32) {
        extern "C" {
            static mut __sheap: u32;
        }
        let sp = cortex_m::register::msp::read() as usize;
        let high = (sp - 256) & !3;
        // Only the address of the linker symbol is taken.
        let heap = core::ptr::addr_of_mut!(__sheap) as usize;
        let low = high.saturating_sub(words * 4).max(heap);
        let mut p = low as *mut u32;
        while (p as usize) < high {
            // SAFETY: [low, high) is RAM between the end of .bss/.uninit
            // (`__sheap`, cortex-m-rt's heap start: this firmware has no
            // heap) and 256 bytes below the live stack pointer: nothing
            // lives there yet.
            unsafe { p.write_volatile(PAINT) };
            p = p.wrapping_add(1);
        }
        (low as *const u32, high as *const u32)
    }

    /// `turns` iterations of a two-instruction loop.
    #[inline(never)]
    fn spin(turns: u32) {
        // SAFETY: a register-only countdown loop.
        unsafe {
            core::arch::asm!(
                "2:",
                "subs {0}, {0}, #1",
                "bne 2b",
                inout(reg) turns => _,
                options(nomem, nostack),
            );
        }
    }

    /// Ends the run: QEMU exits with status 0 (`ok`) or 1.
    pub fn exit(ok: bool) -> ! {
        use cortex_m_semihosting::debug;
        debug::exit(if ok {
            debug::EXIT_SUCCESS
        } else {
            debug::EXIT_FAILURE
        });
        // Without semihosting (a real board) there is nowhere to go.
        loop {
            cortex_m::asm::wfi();
        }
    }

    /// Writes `s` to the report, with no formatting machinery (`core::fmt`
    /// costs the budgeted firmware several KiB of flash).
    pub fn write(s: &str) {
        if let Ok(mut out) = cortex_m_semihosting::hio::hstdout() {
            let _ = out.write_all(s.as_bytes());
        }
    }

    /// Writes `n` in decimal, as [`write`] does.
    pub fn write_number(mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        write(core::str::from_utf8(&digits[i..]).unwrap_or("?"));
    }

    /// Reports where it panicked (not the message: formatting it would link
    /// `core::fmt` into every firmware) and fails the run.
    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo) -> ! {
        write("FAIL: panic");
        if let Some(at) = info.location() {
            write(" at ");
            write(at.file());
            write(":");
            write_number(at.line().into());
        }
        write("\n");
        exit(false)
    }
}

#[cfg(not(target_os = "none"))]
mod host {
    use std::time::Instant;

    macro_rules! report {
        ($($arg:tt)*) => { println!($($arg)*) };
    }
    pub(crate) use report;

    /// The host's monotonic clock.
    pub struct Board {
        origin: Instant,
    }

    impl Board {
        pub fn take() -> Board {
            Board {
                origin: Instant::now(),
            }
        }

        pub fn now(&self) -> u64 {
            self.origin.elapsed().as_nanos() as u64
        }

        pub fn since(&self, start: u64) -> u64 {
            self.now() - start
        }

        pub fn cost(&self, ticks: u64) -> u64 {
            ticks
        }

        pub const UNIT: &'static str = "ns (host)";

        pub fn per_tick(&self) -> u64 {
            1
        }

        pub fn repaint(&mut self, _words: usize) {}

        pub fn depth(&self) -> Option<usize> {
            None
        }

        pub fn stack_peak(&self) -> Option<usize> {
            None
        }
    }

    pub fn exit(ok: bool) -> ! {
        std::process::exit(if ok { 0 } else { 1 })
    }

    pub fn write(s: &str) {
        print!("{s}");
    }

    pub fn write_number(n: u64) {
        print!("{n}");
    }
}
