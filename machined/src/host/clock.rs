//! The wall clock, and whether the kernel says it is synchronized: the
//! only question `scope.not_after` asks of the time (`basalt_api::scope`).

/// One reading of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Unix seconds (`CLOCK_REALTIME`).
    pub unix: i64,
    /// `adjtimex(2)` reports a clock state other than `TIME_ERROR`, i.e.
    /// `STA_UNSYNC` is clear: a time client (NTP, PTP) disciplines it. The
    /// kernel boots with it set, and only a `CAP_SYS_TIME` process clears it.
    pub synchronized: bool,
}

/// The running kernel's clock.
pub fn read() -> Clock {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    Clock {
        unix,
        synchronized: synchronized(),
    }
}

fn synchronized() -> bool {
    // SAFETY: `timex` is a C struct of integers (and padding) for which all
    // zeroes is a valid value; `modes = 0` makes adjtimex(2) only read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed `timex` for the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    state >= 0 && state != libc::TIME_ERROR
}

#[cfg(test)]
mod tests {
    /// `adjtimex` answers unprivileged when it only reads.
    #[test]
    fn reads_the_clock_without_privilege() {
        let c = super::read();
        assert!(c.unix > 1_700_000_000, "{c:?}");
    }
}
