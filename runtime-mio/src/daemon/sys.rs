//! The few system calls std does not wrap: the open file limit. (Socket
//! options for batched I/O are in [`super::udp`].)

/// Raises the soft limit on open files to the hard limit and returns the
/// limit now in force: each exit channel holds one socket.
pub fn raise_open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit the call fills in.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above; the new limit does not exceed the hard limit.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc == 0 {
            limit = raised;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// The soft and hard limits on open files.
pub fn open_file_limits() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit the call fills in.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the limit on open files to at least `wanted`: the soft limit to
/// the hard limit, and both to `wanted` if the hard limit is lower (only
/// root, or CAP_SYS_RESOURCE, may raise a hard limit). Returns the soft and
/// hard limits now in force, whether or not `wanted` was reached.
pub fn raise_open_file_limit_to(
    wanted: libc::rlim_t,
) -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let (soft, hard) = open_file_limits()?;
    let target = if hard >= wanted {
        (hard, hard)
    } else {
        (wanted, wanted)
    };
    if target != (soft, hard) {
        let raised = libc::rlimit {
            rlim_cur: target.0,
            rlim_max: target.1,
        };
        // SAFETY: a valid rlimit that lives across the call.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if rc != 0 && hard > soft {
            // Not allowed to raise the hard limit: the soft one at least.
            let _ = raise_open_file_limit();
        }
    }
    open_file_limits()
}
