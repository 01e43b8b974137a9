//! What keeps password guessing from starving the server: at most
//! [`BCRYPT_AT_ONCE`] bcrypt checks run at once (each takes tens of
//! milliseconds of CPU on purpose), and a client address that failed
//! [`MAX_FAILURES`] times within [`FAILURE_WINDOW`] is refused without a
//! check until the window passes.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// bcrypt checks at once: one per core here, so scrapes keep a core.
pub const BCRYPT_AT_ONCE: usize = 2;
/// How long a request waits for a bcrypt slot before a 503.
pub const BCRYPT_WAIT: Duration = Duration::from_secs(2);
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// Client addresses remembered at most; past it the expired windows go,
/// and if none has expired (a flood of addresses) all are forgotten.
const ADDRESSES: usize = 4096;

#[derive(Clone)]
pub struct AuthThrottle {
    bcrypt: Arc<Semaphore>,
    failures: Arc<Mutex<HashMap<IpAddr, (Instant, u32)>>>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        AuthThrottle {
            bcrypt: Arc::new(Semaphore::new(BCRYPT_AT_ONCE)),
            failures: Arc::default(),
        }
    }
}

impl AuthThrottle {
    /// A bcrypt slot, or `None` after [`BCRYPT_WAIT`].
    pub async fn bcrypt_slot(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(BCRYPT_WAIT, self.bcrypt.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Whether `addr` failed too often lately.
    pub fn refused(&self, addr: IpAddr, now: Instant) -> bool {
        let Ok(f) = self.failures.lock() else {
            return false;
        };
        f.get(&addr).is_some_and(|(start, n)| {
            now.duration_since(*start) < FAILURE_WINDOW && *n >= MAX_FAILURES
        })
    }

    /// Counts a failed login from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        if f.len() >= ADDRESSES && !f.contains_key(&addr) {
            f.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
            if f.len() >= ADDRESSES {
                // Every window is fresh: a flood of addresses. Start over
                // rather than grow; each address can try again.
                f.clear();
            }
        }
        let e = f.entry(addr).or_insert((now, 0));
        if now.duration_since(e.0) >= FAILURE_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_passes() {
        let t = AuthThrottle::default();
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed(a, t0);
        }
        assert!(!t.refused(a, t0));
        t.failed(a, t0);
        assert!(t.refused(a, t0));
        assert!(!t.refused(b, t0), "other addresses are not held up");
        assert!(!t.refused(a, t0 + FAILURE_WINDOW), "the window passes");
        t.failed(a, t0 + FAILURE_WINDOW);
        assert!(!t.refused(a, t0 + FAILURE_WINDOW), "and counting restarts");
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_addresses() {
        let t = AuthThrottle::default();
        let t0 = Instant::now();
        for i in 0..3 * ADDRESSES as u32 {
            t.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        let n = t.failures.lock().map(|f| f.len()).unwrap_or(usize::MAX);
        assert!(n <= ADDRESSES, "{n} addresses kept");
    }

    #[tokio::test]
    async fn at_most_two_bcrypt_slots_at_once() {
        let t = AuthThrottle::default();
        let a = t.bcrypt_slot().await;
        let b = t.bcrypt_slot().await;
        assert!(a.is_some() && b.is_some());
        assert!(
            t.bcrypt_slot().await.is_none(),
            "a third waits, then gives up"
        );
        drop(a);
        assert!(t.bcrypt_slot().await.is_some());
    }
}
