//! The executor: one worker thread per device, each running its schedule list in order.
//!
//! A [`Trainer`] owns the model split into the schedule's stages (stage `s` on device
//! `schedule.device_of(s)`). A training step spawns one scoped thread per device; each runs its
//! list pass by pass, receiving inputs through its [`Transport`] endpoint (blocking, with a
//! timeout) and sending outputs without blocking. Passes between two stages of the same device
//! (the V-shape's turn) hand their tensors over locally. Weight gradients accumulate over the
//! microbatches; each worker applies AdamW to its stages after its last pass.
//!
//! A (stage, microbatch) with an R pass in the schedule is recomputed: its F keeps only the stage
//! input (and, on the last stage, the targets) and frees its activations
//! ([`Stage::forward_checkpointed`]); its R reruns the stage's forward from that input
//! ([`Stage::recompute`]) without sending anything or counting the loss again, and its backward
//! then finds the activations as after an ordinary F.
//!
//! A failing or panicking pass raises a shared abort flag: every other worker stops at its next
//! pass or within one poll of a blocked receive, and the step returns the failing device's error
//! (device and pass named). A schedule that fails [`pipeblocks_core::validate()`] is refused
//! before anything is computed.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use pipeblocks_core::{validate, Pass, PassKind, Schedule};

use crate::data::{Batch, Micro};
use crate::error::{Result, RuntimeError};
use crate::measure::{PassRecord, StepReport};
use crate::model::{AdamW, ModelConfig, Param, Stage, StageOutput};
use crate::transport::{channels, Key, RecvError, Transport};

/// A pass at which a worker panics on purpose, to test fault handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The device that panics (its list must contain `pass`).
    pub device: u32,
    /// The pass at which it panics.
    pub pass: Pass,
}

/// Everything about a training run except the schedule.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Model sizes.
    pub model: ModelConfig,
    /// Sequences per step (split evenly over the microbatches).
    pub batch: usize,
    /// Seed of the initial parameters and of the data order.
    pub seed: u64,
    /// Optimiser.
    pub opt: AdamW,
    /// How long a receive may wait before the step fails.
    pub recv_timeout: Duration,
    /// Run each device on its own CUDA GPU (needs the `cuda` feature).
    pub cuda: bool,
    /// Inject a panic (tests).
    pub fault: Option<Fault>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelConfig::default(),
            batch: 8,
            seed: 1,
            opt: AdamW::default(),
            recv_timeout: Duration::from_secs(60),
            cuda: false,
            fault: None,
        }
    }
}

/// The compute device for pipeline device `index`.
pub fn compute_device(index: u32, cuda: bool) -> Result<Device> {
    if !cuda {
        return Ok(Device::Cpu);
    }
    #[cfg(feature = "cuda")]
    {
        Ok(Device::new_cuda(index as usize)?)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = index;
        Err(RuntimeError::config(
            "this build has no CUDA support; rebuild with `--features cuda` or train on the CPU",
        ))
    }
}

/// A model split over a schedule's stages, ready to train.
pub struct Trainer {
    cfg: TrainConfig,
    schedule: Schedule,
    stages: Vec<Stage>,
    devices: Vec<Device>,
    /// Per `stage · m + mb`, whether the schedule recomputes the microbatch on the stage.
    recomputed: Vec<bool>,
    steps_done: u64,
}

impl Trainer {
    /// Validates the schedule and builds the stages. Refuses invalid schedules and sizes that do
    /// not fit before computing anything.
    pub fn new(cfg: TrainConfig, schedule: Schedule) -> Result<Self> {
        validate(&schedule)?;
        if schedule.placement.lanes() > 1 {
            return Err(RuntimeError::config(format!(
                "the runtime trains one pipeline, and {}'s {} placement runs two (two parameter copies whose gradients would need summing); simulate it, or train dualpipev",
                schedule.name,
                schedule.placement.describe()
            )));
        }
        if let Some(st) = schedule.selective.first() {
            return Err(RuntimeError::config(format!(
                "the runtime's stages have no attention to recompute selectively, and {} recomputes stage {st} selectively; simulate it, or train it with full recomputation",
                schedule.name
            )));
        }
        if let Some(q) = schedule
            .lists
            .iter()
            .flatten()
            .find(|q| q.kind.is_transfer())
        {
            return Err(RuntimeError::config(format!(
                "the runtime keeps every activation on its device (its devices are CPU threads, with no host link to offload over), and {} lists {q}; simulate it, or train it without its O and L passes",
                schedule.name
            )));
        }
        cfg.model.check()?;
        let m = schedule.microbatches as usize;
        if cfg.batch == 0 || !cfg.batch.is_multiple_of(m) {
            return Err(RuntimeError::config(format!(
                "--batch {} cannot be split into {m} equal microbatches; make --batch a multiple of -m",
                cfg.batch
            )));
        }
        if let Some(f) = cfg.fault {
            if f.device >= schedule.devices {
                return Err(RuntimeError::config(format!(
                    "fault on device {} which does not exist",
                    f.device
                )));
            }
        }
        let devices = (0..schedule.devices)
            .map(|d| compute_device(d, cfg.cuda))
            .collect::<Result<Vec<_>>>()?;
        let tokens = (cfg.batch * cfg.model.seq) as f64;
        let stages = (0..schedule.stages)
            .map(|s| {
                let dev = &devices[schedule.device_of(s) as usize];
                let mut st = Stage::new(&cfg.model, s, schedule.stages, cfg.seed, dev)?;
                st.set_loss_scale(1.0 / tokens);
                Ok(st)
            })
            .collect::<Result<Vec<_>>>()?;
        let recomputed = recomputed(&schedule);
        Ok(Trainer {
            cfg,
            schedule,
            stages,
            devices,
            recomputed,
            steps_done: 0,
        })
    }

    /// The schedule being run.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// Whether the schedule recomputes microbatch `mb` on `stage` (it lists an R pass for it).
    pub fn is_recomputed(&self, stage: u32, mb: u32) -> bool {
        let m = self.schedule.microbatches;
        stage < self.schedule.stages
            && mb < m
            && self.recomputed[stage as usize * m as usize + mb as usize]
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Optimiser steps taken so far.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Sets the optimiser step counter (used when resuming).
    pub fn set_steps_done(&mut self, n: u64) {
        self.steps_done = n;
    }

    /// All parameters in model order.
    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.stages.iter_mut().flat_map(Stage::params_mut).collect()
    }

    /// The accumulated gradients, by parameter name, in model order.
    pub fn gradients(&mut self) -> Result<NamedGrads> {
        self.params_mut()
            .into_iter()
            .map(|p| Ok((p.name.clone(), p.grad.flatten_all()?.to_vec1::<f32>()?)))
            .collect()
    }

    /// One training step: gradients over all microbatches, then AdamW.
    pub fn step(&mut self, batch: &Batch) -> Result<StepReport> {
        self.run(batch, true)
    }

    /// Runs every pass of one step and leaves the summed gradients in place (no optimiser
    /// step); see [`Trainer::gradients`].
    pub fn accumulate(&mut self, batch: &Batch) -> Result<StepReport> {
        self.run(batch, false)
    }

    fn run(&mut self, batch: &Batch, update: bool) -> Result<StepReport> {
        let s = &self.schedule;
        let m = s.microbatches as usize;
        if batch.rows != self.cfg.batch || batch.seq != self.cfg.model.seq {
            return Err(RuntimeError::config(format!(
                "the batch is {}×{} but the trainer was built for {}×{}",
                batch.rows, batch.seq, self.cfg.batch, self.cfg.model.seq
            )));
        }
        for st in &mut self.stages {
            st.clear();
            for p in st.params_mut() {
                p.zero_grad()?;
            }
        }
        let stage_device: Vec<u32> = (0..s.stages).map(|st| s.device_of(st)).collect();
        let first_dev = stage_device[0] as usize;
        let last_dev = stage_device[s.stages as usize - 1] as usize;
        let inputs = batch.split(m, &self.devices[first_dev])?;
        let targets = if first_dev == last_dev {
            inputs.clone()
        } else {
            batch.split(m, &self.devices[last_dev])?
        };
        let mut per_device: Vec<Vec<&mut Stage>> = (0..s.devices).map(|_| Vec::new()).collect();
        for st in self.stages.iter_mut() {
            per_device[stage_device[st.index as usize] as usize].push(st);
        }
        let abort = AtomicBool::new(false);
        // Order in which workers failed: the first real failure is the one to report,
        // the others are its consequences (aborted waits, peers gone).
        let failures = AtomicUsize::new(0);
        let origin = Instant::now();
        if self.steps_done >= crate::checkpoint::MAX_STEPS {
            return Err(RuntimeError::config(format!(
                "the optimiser has taken {} steps, the most it counts",
                self.steps_done
            )));
        }
        let step_no = self.steps_done + 1;
        let opt = self.cfg.opt;
        let timeout = self.cfg.recv_timeout;
        let fault = self.cfg.fault;
        let endpoints = channels(s.devices);
        let results: Vec<(usize, Result<WorkerOutput>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = per_device
                .into_iter()
                .zip(endpoints)
                .enumerate()
                .map(|(d, (stages, mut ep))| {
                    let w = Worker {
                        device: d as u32,
                        list: &s.lists[d],
                        stages,
                        stage_device: &stage_device,
                        recomputed: &self.recomputed,
                        microbatches: s.microbatches,
                        inputs: &inputs,
                        targets: &targets,
                        compute: &self.devices[d],
                        abort: &abort,
                        timeout,
                        origin,
                        fault: fault.filter(|f| f.device == d as u32).map(|f| f.pass),
                        local: HashMap::new(),
                        compute_start: None,
                        compute_end: None,
                    };
                    let abort = &abort;
                    let failures = &failures;
                    scope.spawn(move || {
                        let r = w.run(&mut ep, update.then_some((opt, step_no)));
                        let mut rank = usize::MAX;
                        if r.is_err() {
                            // Ranked before the flag is raised and before this endpoint
                            // is dropped, so any failure it causes ranks later.
                            rank = failures.fetch_add(1, Ordering::SeqCst);
                            abort.store(true, Ordering::SeqCst);
                        }
                        (rank, r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(d, h)| {
                    h.join().unwrap_or_else(|_| {
                        (
                            usize::MAX - 1,
                            Err(RuntimeError::State(format!(
                                "the worker of device {d} panicked outside a pass"
                            ))),
                        )
                    })
                })
                .collect()
        });
        let step_time = origin.elapsed().as_secs_f64();
        let mut outputs = Vec::with_capacity(results.len());
        // The error to report: the earliest failure that is not merely an abort.
        let mut first_err: Option<((bool, usize), RuntimeError)> = None;
        for (rank, r) in results {
            match r {
                Ok(o) => outputs.push(o),
                Err(e) => {
                    let key = (matches!(e, RuntimeError::Aborted { .. }), rank);
                    let earlier = match &first_err {
                        Some((k, _)) => key < *k,
                        None => true,
                    };
                    if earlier {
                        first_err = Some((key, e));
                    }
                }
            }
        }
        if let Some((_, e)) = first_err {
            for st in &mut self.stages {
                st.clear();
            }
            return Err(e);
        }
        if update {
            self.steps_done = step_no;
        }
        let tokens = batch.rows * batch.seq;
        let loss_sum: f64 = outputs
            .iter()
            .flat_map(|o| o.losses.iter().map(|x| x.1))
            .sum();
        Ok(StepReport::new(
            loss_sum / tokens as f64,
            outputs.into_iter().map(|o| o.records).collect(),
            step_time,
            tokens,
        ))
    }
}

struct WorkerOutput {
    records: Vec<PassRecord>,
    losses: Vec<(u32, f64)>,
}

struct Worker<'a> {
    device: u32,
    list: &'a [Pass],
    stages: Vec<&'a mut Stage>,
    stage_device: &'a [u32],
    /// Per `stage · m + mb`, whether the microbatch is recomputed on the stage.
    recomputed: &'a [bool],
    microbatches: u32,
    inputs: &'a [Micro],
    targets: &'a [Micro],
    compute: &'a Device,
    abort: &'a AtomicBool,
    timeout: Duration,
    origin: Instant,
    fault: Option<Pass>,
    local: HashMap<Key, Tensor>,
    /// When the running pass had its inputs and began computing (waiting is not busy time).
    compute_start: Option<f64>,
    /// When its computation ended (before the send, which never blocks).
    compute_end: Option<f64>,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

impl Worker<'_> {
    fn run(mut self, ep: &mut dyn Transport, update: Option<(AdamW, u64)>) -> Result<WorkerOutput> {
        let mut records = Vec::with_capacity(self.list.len());
        let mut losses = Vec::new();
        for &pass in self.list {
            if self.abort.load(Ordering::SeqCst) {
                return Err(RuntimeError::Aborted {
                    device: self.device,
                    pass,
                });
            }
            self.compute_start = None;
            self.compute_end = None;
            let outcome = catch_unwind(AssertUnwindSafe(|| self.pass(ep, pass)));
            let now = self.origin.elapsed().as_secs_f64();
            let end = self.compute_end.unwrap_or(now);
            let start = self.compute_start.unwrap_or(end);
            match outcome {
                Ok(Ok(loss)) => {
                    if let Some(l) = loss {
                        losses.push((pass.mb, l));
                    }
                }
                Ok(Err(e)) => return Err(self.wrap(pass, e)),
                Err(p) => {
                    return Err(RuntimeError::Panic {
                        device: self.device,
                        pass,
                        message: panic_message(p.as_ref()),
                    })
                }
            }
            let held = self.stages.iter().map(|s| s.held_bytes()).sum();
            records.push(PassRecord {
                pass,
                start,
                end,
                held_after: held,
            });
        }
        if let Some((opt, step)) = update {
            for st in self.stages.iter_mut() {
                for p in st.params_mut() {
                    p.adamw(&opt, step)?;
                }
            }
        }
        Ok(WorkerOutput { records, losses })
    }

    fn wrap(&self, pass: Pass, e: RuntimeError) -> RuntimeError {
        match e {
            e @ (RuntimeError::Timeout { .. }
            | RuntimeError::Aborted { .. }
            | RuntimeError::Pass { .. }) => e,
            other => RuntimeError::Pass {
                device: self.device,
                pass,
                message: other.to_string(),
            },
        }
    }

    fn stage(&mut self, s: u32) -> Result<&mut Stage> {
        let device = self.device;
        self.stages
            .iter_mut()
            .find(|st| st.index == s)
            .map(|st| &mut **st)
            .ok_or_else(|| RuntimeError::State(format!("device {device} does not hold stage {s}")))
    }

    fn send(
        &mut self,
        ep: &mut dyn Transport,
        pass: Pass,
        to_stage: u32,
        key: Key,
        t: Tensor,
    ) -> Result<()> {
        let to = self.stage_device[to_stage as usize];
        if to == self.device {
            self.local.insert(key, t);
            return Ok(());
        }
        let aborted = self.abort;
        ep.send(to, key, t).map_err(|_| {
            if aborted.load(Ordering::SeqCst) {
                // The receiver stopped because of another worker's failure.
                RuntimeError::Aborted {
                    device: self.device,
                    pass,
                }
            } else {
                RuntimeError::Pass {
                    device: self.device,
                    pass,
                    message: format!("cannot send {key} to device {to}: its worker is gone"),
                }
            }
        })
    }

    fn recv(
        &mut self,
        ep: &mut dyn Transport,
        pass: Pass,
        from_stage: u32,
        key: Key,
    ) -> Result<Tensor> {
        let from = self.stage_device[from_stage as usize];
        if from == self.device {
            return self.local.remove(&key).ok_or_else(|| {
                RuntimeError::State(format!(
                    "{key} should have been computed on this device before"
                ))
            });
        }
        let t0 = Instant::now();
        match ep.recv(key, t0 + self.timeout, self.abort) {
            Ok(t) => Ok(t.to_device(self.compute)?),
            Err(RecvError::Timeout) => Err(RuntimeError::Timeout {
                device: self.device,
                pass,
                waited_for: format!("{key} from device {from}"),
                seconds: t0.elapsed().as_secs_f64(),
            }),
            Err(RecvError::Aborted) => Err(RuntimeError::Aborted {
                device: self.device,
                pass,
            }),
            Err(RecvError::Disconnected) if self.abort.load(Ordering::SeqCst) => {
                Err(RuntimeError::Aborted {
                    device: self.device,
                    pass,
                })
            }
            Err(RecvError::Disconnected) => Err(RuntimeError::Pass {
                device: self.device,
                pass,
                message: format!("waiting for {key} from device {from}, but every sender is gone"),
            }),
        }
    }

    /// Marks the start of the computation (inputs are there); injects the test fault.
    fn begin(&mut self, pass: Pass) {
        self.compute_start = Some(self.origin.elapsed().as_secs_f64());
        if self.fault == Some(pass) {
            panic!("injected fault");
        }
    }

    /// Marks the end of the computation (the send that may follow is not busy time: it never
    /// blocks, and a thread descheduled right after it must not look busy).
    fn finish(&mut self) {
        self.compute_end = Some(self.origin.elapsed().as_secs_f64());
    }

    /// Runs one pass; returns the microbatch loss for the last stage's forward.
    fn pass(&mut self, ep: &mut dyn Transport, pass: Pass) -> Result<Option<f64>> {
        let (s, mb) = (pass.stage, pass.mb);
        let last = self.stage_device.len() as u32 - 1;
        match pass.kind {
            PassKind::F => {
                let input = if s == 0 {
                    self.inputs[mb as usize].tokens.clone()
                } else {
                    self.recv(ep, pass, s - 1, Key::Activation { stage: s, mb })?
                };
                self.begin(pass);
                let targets = self.targets[mb as usize].targets.clone();
                let recomputed =
                    self.recomputed[s as usize * self.microbatches as usize + mb as usize];
                let st = self.stage(s)?;
                let out = if recomputed {
                    st.forward_checkpointed(mb, &input, Some(&targets))?
                } else {
                    st.forward(mb, &input, Some(&targets))?
                };
                self.finish();
                match out {
                    StageOutput::Loss(l) => Ok(Some(l)),
                    StageOutput::Activation(a) => {
                        self.send(ep, pass, s + 1, Key::Activation { stage: s + 1, mb }, a)?;
                        Ok(None)
                    }
                }
            }
            PassKind::B | PassKind::BW => {
                let dy = if s == last {
                    None
                } else {
                    Some(self.recv(ep, pass, s + 1, Key::Gradient { stage: s, mb })?)
                };
                self.begin(pass);
                let st = self.stage(s)?;
                let dx = if pass.kind == PassKind::B {
                    st.backward_input(mb, dy.as_ref())?
                } else {
                    st.backward(mb, dy.as_ref())?
                };
                self.finish();
                if let Some(dx) = dx {
                    self.send(ep, pass, s - 1, Key::Gradient { stage: s - 1, mb }, dx)?;
                }
                Ok(None)
            }
            PassKind::W => {
                self.begin(pass);
                self.stage(s)?.backward_weight(mb)?;
                self.finish();
                Ok(None)
            }
            PassKind::R => {
                // The input was kept by this stage's F on this device: nothing to receive,
                // nothing to send, no loss to count.
                self.begin(pass);
                self.stage(s)?.recompute(mb)?;
                self.finish();
                Ok(None)
            }
            // Refused when the executor is built.
            PassKind::O | PassKind::L => Err(RuntimeError::config(format!(
                "the runtime does not offload activations ({pass})"
            ))),
        }
    }
}

/// Per `stage · m + mb`, whether `schedule` lists an R pass for the microbatch on the stage.
fn recomputed(schedule: &Schedule) -> Vec<bool> {
    let m = schedule.microbatches as usize;
    let mut out = vec![false; schedule.stages as usize * m];
    for q in schedule.lists.iter().flatten() {
        if q.kind == PassKind::R {
            out[q.stage as usize * m + q.mb as usize] = true;
        }
    }
    out
}

/// Gradients by parameter name, in model order.
pub type NamedGrads = Vec<(String, Vec<f32>)>;

/// Loss and parameter gradients of the same model without pipelining: one stage, the whole batch
/// as one microbatch, fused backward. The reference the pipelined runs must match.
pub fn reference_gradients(cfg: &TrainConfig, batch: &Batch) -> Result<(f64, NamedGrads)> {
    let dev = Device::Cpu;
    let mut st = Stage::new(&cfg.model, 0, 1, cfg.seed, &dev)?;
    let tokens = batch.rows * batch.seq;
    st.set_loss_scale(1.0 / tokens as f64);
    let whole = batch.whole(&dev)?;
    let loss = match st.forward(0, &whole.tokens, Some(&whole.targets))? {
        StageOutput::Loss(l) => l / tokens as f64,
        StageOutput::Activation(_) => {
            return Err(RuntimeError::State(
                "a single stage must end in the loss".into(),
            ))
        }
    };
    st.backward(0, None)?;
    let grads = st
        .params_mut()
        .into_iter()
        .map(|p| Ok((p.name.clone(), p.grad.flatten_all()?.to_vec1::<f32>()?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((loss, grads))
}
