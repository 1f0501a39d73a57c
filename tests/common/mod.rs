//! Shared helpers of the op conformance tests: one CPU client per test binary, module building,
//! running on the CPU plugin, seeded inputs, references and comparisons.
#![allow(dead_code)]
pub mod check;
pub mod inputs;
pub mod reference;

use hlo::{Builder, Literal, Module, ModuleBuilder, Shape, Value};
use std::sync::OnceLock;
use tpu::{Buffer, Client, ClientOptions, CompileOptions, Executable};

/// Virtual CPU devices of the shared client (collective tests use 2 or 4 of them).
pub const DEVICES: i64 = 4;

/// The CPU client shared by every test of this binary (created once; the plugin is installed on
/// first use when none is found).
pub fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| Client::cpu(&ClientOptions::cpu(DEVICES)).expect("CPU PJRT client"))
}

/// Builds a one-computation module: `f` gets the parameters and returns the outputs (a tuple
/// root when there are several).
pub fn build(
    params: &[Shape],
    f: impl FnOnce(&Builder, &[Value]) -> hlo::Result<Vec<Value>>,
) -> hlo::Result<Module> {
    let m = ModuleBuilder::new("test");
    let b = m.builder("main");
    let ps = params
        .iter()
        .enumerate()
        .map(|(i, s)| b.parameter(s.clone(), &format!("p{i}")))
        .collect::<hlo::Result<Vec<_>>>()?;
    let outs = f(&b, &ps)?;
    let root = if outs.len() == 1 {
        outs[0]
    } else {
        b.tuple(&outs)?
    };
    let entry = b.finish(root)?;
    m.build(entry)
}

/// Like [`build`], panicking on a builder error (with the error's text).
#[track_caller]
pub fn module(
    params: &[Shape],
    f: impl FnOnce(&Builder, &[Value]) -> hlo::Result<Vec<Value>>,
) -> Module {
    build(params, f).unwrap_or_else(|e| panic!("building the module failed: {e}"))
}

pub fn compile(m: &Module, opts: &CompileOptions) -> Executable {
    let bytes = m.to_proto_bytes().expect("lowering");
    client()
        .compile(&bytes, opts)
        .unwrap_or_else(|e| panic!("compile failed: {e}"))
}

pub fn device(i: usize) -> tpu::Device {
    client().addressable_devices().expect("devices")[i].clone()
}

pub fn upload(l: &Literal, dev: usize) -> Buffer {
    client()
        .buffer_from_host_bytes(l.element_type(), l.bytes(), &l.shape().dims, &device(dev))
        .expect("buffer_from_host")
}

pub fn download(b: &Buffer) -> Literal {
    let bytes = b.to_host_bytes().expect("to_host");
    Literal::from_bytes(
        hlo::ArrayShape::new(b.element_type(), b.dims().to_vec()),
        bytes,
    )
    .expect("output bytes fill the shape")
}

/// Compiles `m` for one device, runs it on `inputs` and returns the (flattened) outputs.
#[track_caller]
pub fn run(m: &Module, inputs: &[Literal]) -> Vec<Literal> {
    let exe = compile(m, &CompileOptions::default());
    let bufs: Vec<Buffer> = inputs.iter().map(|l| upload(l, 0)).collect();
    let args: Vec<&Buffer> = bufs.iter().collect();
    let outs = exe
        .execute(&args)
        .unwrap_or_else(|e| panic!("execute failed: {e}"));
    outs.iter().map(download).collect()
}

/// Compiles `m` with `opts` and runs it on every device: `inputs[d]` are device d's arguments.
#[track_caller]
pub fn run_devices(
    m: &Module,
    opts: &CompileOptions,
    inputs: &[Vec<Literal>],
) -> Vec<Vec<Literal>> {
    let exe = compile(m, opts);
    let devs = exe.addressable_devices().to_vec();
    assert_eq!(devs.len(), inputs.len(), "one argument list per device");
    let bufs: Vec<Vec<Buffer>> = inputs
        .iter()
        .zip(&devs)
        .map(|(list, d)| {
            list.iter()
                .map(|l| {
                    client()
                        .buffer_from_host_bytes(l.element_type(), l.bytes(), &l.shape().dims, d)
                        .expect("buffer_from_host")
                })
                .collect()
        })
        .collect();
    let args: Vec<Vec<&Buffer>> = bufs.iter().map(|l| l.iter().collect()).collect();
    let outs = exe
        .execute_sharded(&args)
        .unwrap_or_else(|e| panic!("execute_sharded failed: {e}"));
    outs.iter()
        .map(|l| l.iter().map(download).collect())
        .collect()
}

/// A literal from row-major values.
pub fn lit<T: hlo::NativeType>(values: &[T], dims: &[i64]) -> Literal {
    Literal::from_slice(values, dims).expect("values fill dims")
}

/// An f64 literal converted to `ty` (rounded as `half`/`as` casts do).
pub fn lit_as(ty: hlo::ElementType, values: &[f64], dims: &[i64]) -> Literal {
    use hlo::ElementType as E;
    match ty {
        E::F64 => lit(values, dims),
        E::F32 => lit(&values.iter().map(|&x| x as f32).collect::<Vec<_>>(), dims),
        E::F16 => lit(&inputs::to_f16(values), dims),
        E::Bf16 => lit(&inputs::to_bf16(values), dims),
        E::S32 => lit(&values.iter().map(|&x| x as i32).collect::<Vec<_>>(), dims),
        E::S64 => lit(&values.iter().map(|&x| x as i64).collect::<Vec<_>>(), dims),
        E::S8 => lit(&values.iter().map(|&x| x as i8).collect::<Vec<_>>(), dims),
        E::U8 => lit(&values.iter().map(|&x| x as u8).collect::<Vec<_>>(), dims),
        E::U32 => lit(&values.iter().map(|&x| x as u32).collect::<Vec<_>>(), dims),
        E::U64 => lit(&values.iter().map(|&x| x as u64).collect::<Vec<_>>(), dims),
        E::Pred => lit(&values.iter().map(|&x| x != 0.0).collect::<Vec<_>>(), dims),
        E::F8E4M3FN => lit(
            &values
                .iter()
                .map(|&x| hlo::F8E4M3FN::from_f64(x))
                .collect::<Vec<_>>(),
            dims,
        ),
        E::F8E5M2 => lit(
            &values
                .iter()
                .map(|&x| hlo::F8E5M2::from_f64(x))
                .collect::<Vec<_>>(),
            dims,
        ),
    }
}

/// Typed values of an output literal.
#[track_caller]
pub fn vals<T: hlo::NativeType>(l: &Literal) -> Vec<T> {
    l.to_vec::<T>()
        .unwrap_or_else(|| panic!("output is {}, not {}", l.shape(), T::TYPE))
}

pub fn f64s(l: &Literal) -> Vec<f64> {
    l.to_f64_vec()
}

pub fn arr_shape(ty: hlo::ElementType, dims: &[i64]) -> Shape {
    Shape::array(ty, dims.to_vec())
}
