//! Moving activations and gradients between devices.
//!
//! The execution model is the validator's: sends never block, a receive blocks until its data is
//! there. [`Transport`] is the interface a worker uses; [`channels`] builds the in-process
//! implementation (one `std::sync::mpsc` queue per device plus a mailbox for messages that
//! arrive before they are needed).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use candle_core::Tensor;

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// The input activation of `stage` (the output of `stage - 1`) for microbatch `mb`.
    Activation {
        /// Receiving stage.
        stage: u32,
        /// Microbatch.
        mb: u32,
    },
    /// The gradient for the output of `stage` (the input gradient of `stage + 1`).
    Gradient {
        /// Receiving stage.
        stage: u32,
        /// Microbatch.
        mb: u32,
    },
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Activation { stage, mb } => write!(
                f,
                "the activation of stage {} for stage {stage}, microbatch {mb}",
                stage.wrapping_sub(1)
            ),
            Key::Gradient { stage, mb } => write!(
                f,
                "the gradient from stage {} for stage {stage}, microbatch {mb}",
                stage + 1
            ),
        }
    }
}

/// Why a receive returned without data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The deadline passed.
    Timeout,
    /// The abort flag was raised (another worker failed).
    Aborted,
    /// Every sender is gone.
    Disconnected,
}

/// A device's end of the interconnect.
pub trait Transport: Send {
    /// Sends `tensor` to device `to` without blocking.
    fn send(&mut self, to: u32, key: Key, tensor: Tensor) -> Result<(), RecvError>;
    /// Blocks until the message `key` arrives, `deadline` passes or `abort` is raised.
    fn recv(
        &mut self,
        key: Key,
        deadline: Instant,
        abort: &AtomicBool,
    ) -> Result<Tensor, RecvError>;
}

/// In-process endpoint: a queue per device, plus a mailbox for early arrivals.
pub struct ChannelEndpoint {
    inbox: Receiver<(Key, Tensor)>,
    peers: Vec<Sender<(Key, Tensor)>>,
    mailbox: HashMap<Key, Tensor>,
}

/// How often a blocked receive looks at the abort flag.
const POLL: Duration = Duration::from_millis(20);

/// One connected endpoint per device.
pub fn channels(devices: u32) -> Vec<ChannelEndpoint> {
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..devices).map(|_| channel()).unzip();
    rxs.into_iter()
        .map(|inbox| ChannelEndpoint {
            inbox,
            peers: txs.clone(),
            mailbox: HashMap::new(),
        })
        .collect()
}

impl Transport for ChannelEndpoint {
    fn send(&mut self, to: u32, key: Key, tensor: Tensor) -> Result<(), RecvError> {
        let tx = self.peers.get(to as usize).ok_or(RecvError::Disconnected)?;
        tx.send((key, tensor)).map_err(|_| RecvError::Disconnected)
    }

    fn recv(
        &mut self,
        key: Key,
        deadline: Instant,
        abort: &AtomicBool,
    ) -> Result<Tensor, RecvError> {
        if let Some(t) = self.mailbox.remove(&key) {
            return Ok(t);
        }
        loop {
            if abort.load(Ordering::Relaxed) {
                return Err(RecvError::Aborted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            match self.inbox.recv_timeout(POLL.min(deadline - now)) {
                Ok((k, t)) if k == key => return Ok(t),
                Ok((k, t)) => {
                    self.mailbox.insert(k, t);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(RecvError::Disconnected),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn out_of_order_messages_wait_in_the_mailbox() {
        let mut eps = channels(2);
        let abort = AtomicBool::new(false);
        let t = |x: f32| Tensor::new(&[x], &Device::Cpu).unwrap();
        let a = Key::Activation { stage: 1, mb: 0 };
        let b = Key::Activation { stage: 1, mb: 1 };
        eps[0].send(1, b, t(2.0)).unwrap();
        eps[0].send(1, a, t(1.0)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        let got = eps[1].recv(a, deadline, &abort).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), vec![1.0]);
        let got = eps[1].recv(b, deadline, &abort).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), vec![2.0]);
    }

    #[test]
    fn receive_times_out_and_honours_abort() {
        let mut eps = channels(1);
        let abort = AtomicBool::new(false);
        let k = Key::Gradient { stage: 0, mb: 0 };
        let r = eps[0].recv(k, Instant::now() + Duration::from_millis(30), &abort);
        assert_eq!(r.unwrap_err(), RecvError::Timeout);
        abort.store(true, Ordering::Relaxed);
        let r = eps[0].recv(k, Instant::now() + Duration::from_secs(60), &abort);
        assert_eq!(r.unwrap_err(), RecvError::Aborted);
    }
}
