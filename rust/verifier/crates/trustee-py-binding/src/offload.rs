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

/// Where a job leaves its outcome for the thread that converts it.
pub type Slot<T> = Arc<Mutex<Option<T>>>;

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
        let value = work();
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

pub fn take<T>(slot: &Slot<T>) -> Option<T> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}
