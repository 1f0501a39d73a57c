//! Moving example data to and from devices and running a module once.
use crate::examples::HostArray;
use anyhow::{anyhow, Context, Result};
use half::{bf16, f16};
use hlo::{ElementType, Module};
use std::time::{Duration, Instant};
use tpu::{Buffer, Client, CompileOptions, Device, Executable};

/// Uploads `a` as a buffer of its element type.
pub fn upload(client: &Client, device: &Device, a: &HostArray) -> Result<Buffer> {
    let v = &a.values;
    let d = &a.dims;
    let buf = match a.ty {
        ElementType::F32 => {
            client.buffer_from_host(&v.iter().map(|&x| x as f32).collect::<Vec<_>>(), d, device)
        }
        ElementType::F64 => client.buffer_from_host(v, d, device),
        ElementType::Bf16 => client.buffer_from_host(
            &v.iter().map(|&x| bf16::from_f64(x)).collect::<Vec<_>>(),
            d,
            device,
        ),
        ElementType::F16 => client.buffer_from_host(
            &v.iter().map(|&x| f16::from_f64(x)).collect::<Vec<_>>(),
            d,
            device,
        ),
        ElementType::S32 => {
            client.buffer_from_host(&v.iter().map(|&x| x as i32).collect::<Vec<_>>(), d, device)
        }
        ElementType::S64 => {
            client.buffer_from_host(&v.iter().map(|&x| x as i64).collect::<Vec<_>>(), d, device)
        }
        ElementType::U32 => {
            client.buffer_from_host(&v.iter().map(|&x| x as u32).collect::<Vec<_>>(), d, device)
        }
        other => return Err(anyhow!("uploading {other} example data is not supported")),
    };
    buf.with_context(|| format!("uploading a {}{:?} argument", a.ty, a.dims))
}

/// Downloads any numeric buffer as f64 values.
pub fn download(b: &Buffer) -> Result<Vec<f64>> {
    Ok(match b.element_type() {
        ElementType::F32 => b.to_host::<f32>()?.into_iter().map(f64::from).collect(),
        ElementType::F64 => b.to_host::<f64>()?,
        ElementType::Bf16 => b
            .to_host::<bf16>()?
            .into_iter()
            .map(|x| x.to_f64())
            .collect(),
        ElementType::F16 => b
            .to_host::<f16>()?
            .into_iter()
            .map(|x| x.to_f64())
            .collect(),
        ElementType::S32 => b.to_host::<i32>()?.into_iter().map(f64::from).collect(),
        ElementType::S64 => b.to_host::<i64>()?.into_iter().map(|x| x as f64).collect(),
        ElementType::U32 => b.to_host::<u32>()?.into_iter().map(f64::from).collect(),
        ElementType::Pred => b
            .to_host::<bool>()?
            .into_iter()
            .map(|x| f64::from(u8::from(x)))
            .collect(),
        other => return Err(anyhow!("downloading {other} buffers is not supported")),
    })
}

/// Lowers and compiles a module for one device.
pub fn compile(client: &Client, module: &Module) -> Result<Executable> {
    client
        .compile_module(module, &CompileOptions::default())
        .with_context(|| format!("compiling module '{}'", module.name))
}

/// Outputs of one run and how long compile and execute took.
pub struct RunResult {
    pub outputs: Vec<Vec<f64>>,
    pub compile_time: Duration,
    pub execute_time: Duration,
}

/// Compiles `module`, runs it once on the first device with `inputs`, downloads the outputs.
pub fn run_once(client: &Client, module: &Module, inputs: &[HostArray]) -> Result<RunResult> {
    let device = client
        .addressable_devices()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the client has no addressable device"))?;
    let t0 = Instant::now();
    let exe = compile(client, module)?;
    let compile_time = t0.elapsed();
    let args = inputs
        .iter()
        .map(|a| upload(client, &device, a))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Buffer> = args.iter().collect();
    let t1 = Instant::now();
    let outs = exe.execute(&refs).context("executing")?;
    let outputs = outs.iter().map(download).collect::<Result<Vec<_>>>()?;
    Ok(RunResult {
        outputs,
        compile_time,
        execute_time: t1.elapsed(),
    })
}

/// Largest |got - want| / (1 + |want|) over all outputs; errors when counts differ.
pub fn max_rel_error(got: &[Vec<f64>], want: &[Vec<f64>]) -> Result<f64> {
    if got.len() != want.len() || got.iter().zip(want).any(|(g, w)| g.len() != w.len()) {
        return Err(anyhow!(
            "output count or sizes differ: got {:?}, want {:?}",
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            want.iter().map(Vec::len).collect::<Vec<_>>()
        ));
    }
    Ok(got
        .iter()
        .flatten()
        .zip(want.iter().flatten())
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(0.0, f64::max))
}
