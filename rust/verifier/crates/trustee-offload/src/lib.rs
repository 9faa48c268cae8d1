//! Native worker threads for the coarse calls of the request path (policy evaluation,
//! token signing, resource sealing), so the one Python thread of a KBS worker only parses
//! and routes while a second core does the arithmetic.
//!
//! A worker never touches a Python object or the GIL: a job owns its inputs, leaves its
//! outcome in a slot, and writes the job's id (8 bytes, little-endian) to a pipe. The event
//! loop waits on the pipe's read end (`trustee.offload`) and wakes the task awaiting that id,
//! which then converts the outcome on its own thread. Re-acquiring the GIL from a worker is
//! what made plain thread offload lose to running inline.

use std::io::{PipeReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;

type Task = Box<dyn FnOnce() + Send>;

struct Pool {
    tasks: Mutex<Sender<Task>>,
    done: Arc<Mutex<PipeWriter>>,
    // Kept open for the life of the process; Python reads it through its descriptor.
    reader: PipeReader,
    threads: usize,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Policy evaluation recurses natively over the policy's expressions and the input's
/// nesting; a roomy stack (only touched pages are backed) keeps deep but legal policies
/// from reaching the guard page.
const STACK_BYTES: usize = 64 * 1024 * 1024;

fn worker(tasks: Arc<Mutex<Receiver<Task>>>) {
    loop {
        let task = {
            let rx = tasks.lock().unwrap_or_else(PoisonError::into_inner);
            rx.recv()
        };
        match task {
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

/// Starts the pool once per process; later calls return the same descriptor.
pub fn start(threads: usize) -> std::io::Result<(i32, usize)> {
    if let Some(pool) = POOL.get() {
        return Ok((pool.reader.as_raw_fd(), pool.threads));
    }
    let (reader, writer) = std::io::pipe()?;
    let (tx, rx) = channel::<Task>();
    let rx = Arc::new(Mutex::new(rx));
    let threads = threads.max(1);
    for n in 0..threads {
        let rx = Arc::clone(&rx);
        thread::Builder::new()
            .name(format!("trustee-offload-{n}"))
            .stack_size(STACK_BYTES)
            .spawn(move || worker(rx))?;
    }
    let pool = Pool {
        tasks: Mutex::new(tx),
        done: Arc::new(Mutex::new(writer)),
        reader,
        threads,
    };
    // A concurrent first call may have won; its pool serves, and this one's threads end
    // when their channel's sender is dropped with `pool`.
    let pool = match POOL.set(pool) {
        Ok(()) => POOL.get().expect("just set"),
        Err(_) => POOL.get().expect("set by the other caller"),
    };
    Ok((pool.reader.as_raw_fd(), pool.threads))
}

pub fn started() -> bool {
    POOL.get().is_some()
}

/// Where a job leaves its outcome for the thread that converts it: the value, or the
/// message of a panic (the worker survives it, and the waiting task still wakes).
pub type Slot<T> = Arc<Mutex<Option<Result<T, String>>>>;

/// Runs `work` on a pool thread; its outcome lands in the returned slot before `id` is
/// announced on the pipe. Without a started pool the work runs here, at once.
pub fn submit<T: Send + 'static>(
    id: u64,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<Slot<T>, &'static str> {
    let slot: Slot<T> = Arc::default();
    let Some(pool) = POOL.get() else {
        return Err("the offload pool is not started");
    };
    let out = Arc::clone(&slot);
    let done = Arc::clone(&pool.done);
    let task: Task = Box::new(move || {
        let value = panic::catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned())
        });
        *out.lock().unwrap_or_else(PoisonError::into_inner) = Some(value);
        // 8 bytes is below PIPE_BUF, so ids from several workers never interleave.
        let _ = done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_all(&id.to_le_bytes());
    });
    pool.tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(task)
        .map_err(|_| "the offload pool has stopped")?;
    Ok(slot)
}

pub fn take<T>(slot: &Slot<T>) -> Option<Result<T, String>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    /// Reads announced ids until `count` have arrived (the pipe is blocking in tests).
    fn announced(count: usize) -> Vec<u64> {
        let pool = POOL.get().expect("started");
        let mut ids = Vec::new();
        let mut buf = [0u8; 8];
        while ids.len() < count {
            (&pool.reader).read_exact(&mut buf).expect("pipe");
            ids.push(u64::from_le_bytes(buf));
        }
        ids
    }

    // One test: the pool and its pipe are per process, and tests run concurrently.
    #[test]
    fn pool_lifecycle() {
        assert!(!started());
        assert_eq!(
            submit(1, || 1).err(),
            Some("the offload pool is not started")
        );

        let (fd, threads) = start(2).expect("start");
        assert!(fd >= 0);
        assert_eq!(threads, 2);
        assert!(started());
        // Later starts keep the first pool.
        assert_eq!(start(5).expect("again"), (fd, 2));

        // Every job's outcome is in its slot once its id is announced.
        let slots: Vec<(u64, Slot<u64>)> = (10..110)
            .map(|id| (id, submit(id, move || id * 3).expect("submit")))
            .collect();
        let mut ids = announced(slots.len());
        ids.sort_unstable();
        assert_eq!(ids, (10..110).collect::<Vec<_>>());
        for (id, slot) in &slots {
            assert_eq!(take(slot), Some(Ok(id * 3)));
            assert_eq!(take(slot), None, "an outcome is taken once");
        }

        // Jobs run on the pool's threads, not the caller's.
        let caller = thread::current().id();
        let slot = submit(200, move || thread::current().id() != caller).expect("submit");
        assert_eq!(announced(1), vec![200]);
        assert_eq!(take(&slot), Some(Ok(true)));

        // A panicking job is reported, announced, and leaves the workers serving.
        let before = Instant::now();
        let boom = submit(300, || -> u64 { panic!("boom") }).expect("submit");
        let text =
            submit(301, || -> u64 { panic!("{}", String::from("formatted")) }).expect("submit");
        let mut ids = announced(2);
        ids.sort_unstable();
        assert_eq!(ids, vec![300, 301]);
        assert_eq!(take(&boom), Some(Err("boom".to_owned())));
        assert_eq!(take(&text), Some(Err("formatted".to_owned())));
        let after = submit(302, || 7u64).expect("submit");
        assert_eq!(announced(1), vec![302]);
        assert_eq!(take(&after), Some(Ok(7)));
        assert!(before.elapsed() < Duration::from_secs(10));
    }
}
