//! The persistent compile cache on the CPU plugin: a second compile of the same module loads the
//! stored executable and computes the same results; another module or other options miss; a
//! damaged entry is removed and recompiled, never loaded; the size bound evicts the least
//! recently used entries.
mod common;
use common::inputs::*;
use common::*;
use hlo::ElementType::*;
use tpu::{CacheOutcome, Client, ClientOptions, CompileCache, CompileOptions};

fn mlp(scale: f32) -> hlo::Module {
    module(
        &[arr_shape(F32, &[8, 16]), arr_shape(F32, &[16, 4])],
        |b, p| {
            let dims = hlo::ir::DotDims {
                lhs_contracting: vec![1],
                rhs_contracting: vec![0],
                ..Default::default()
            };
            let y = b.dot_general(p[0], p[1], dims, [hlo::ir::Precision::Highest; 2], None)?;
            Ok(vec![b.tanh(b.mul(y, b.scalar(scale)?)?)?])
        },
    )
}

fn run_on(client: &Client, exe: &tpu::Executable, x: &[f32], w: &[f32]) -> Vec<f32> {
    let dev = &client.addressable_devices().unwrap()[0];
    let xb = client.buffer_from_host(x, &[8, 16], dev).unwrap();
    let wb = client.buffer_from_host(w, &[16, 4], dev).unwrap();
    exe.execute(&[&xb, &wb]).unwrap()[0]
        .to_host::<f32>()
        .unwrap()
}

#[test]
fn second_compile_loads_and_damage_recompiles() {
    let client = Client::cpu(&ClientOptions::cpu(1)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = CompileCache::new(tmp.path(), 1 << 30);
    let bytes = mlp(0.5).to_proto_bytes().unwrap();
    let opts = CompileOptions::default();
    let mut r = rng(7);
    let (x, w) = (normal_f32(&mut r, 128), normal_f32(&mut r, 64));

    let (first, outcome) = cache.compile(&client, &bytes, &opts).unwrap();
    assert_eq!(outcome, CacheOutcome::Stored);
    let want = run_on(&client, &first, &x, &w);
    let (second, outcome) = cache.compile(&client, &bytes, &opts).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(run_on(&client, &second, &x, &w), want);
    // The loaded executable checks its arguments as a compiled one does.
    let dev = &client.addressable_devices().unwrap()[0];
    let bad = client.buffer_from_host(&x, &[16, 8], dev).unwrap();
    let wb = client.buffer_from_host(&w, &[16, 4], dev).unwrap();
    assert!(second.execute(&[&bad, &wb]).is_err());

    // Another module, other options: other entries.
    let other = mlp(2.0).to_proto_bytes().unwrap();
    assert_eq!(
        cache.compile(&client, &other, &opts).unwrap().1,
        CacheOutcome::Stored
    );
    let mut opts2 = CompileOptions::default();
    opts2.env_option_overrides.insert(
        "xla_cpu_enable_fast_math".into(),
        tpu::OptionOverride::Bool(false),
    );
    assert_eq!(
        cache.compile(&client, &bytes, &opts2).unwrap().1,
        CacheOutcome::Stored
    );

    // Damage the first entry: it is removed and compiled again, not loaded.
    let key = cache
        .key(&client, &bytes, &opts.to_bytes().unwrap())
        .unwrap();
    let entry = tmp.path().join(format!("{key}.pjrt"));
    let mut raw = std::fs::read(&entry).unwrap();
    let n = raw.len();
    raw[n - 10] ^= 0xff;
    std::fs::write(&entry, &raw).unwrap();
    let (again, outcome) = cache.compile(&client, &bytes, &opts).unwrap();
    assert_eq!(outcome, CacheOutcome::Stored, "recompiled, not loaded");
    assert_eq!(run_on(&client, &again, &x, &w), want);
    assert_eq!(
        cache.compile(&client, &bytes, &opts).unwrap().1,
        CacheOutcome::Hit
    );
    // No temporary files are left behind.
    let stray: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(stray.is_empty());
}

#[test]
fn the_size_bound_evicts_the_least_recently_used() {
    let client = Client::cpu(&ClientOptions::cpu(1)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = CompileOptions::default();
    let probe = CompileCache::new(tmp.path().join("probe"), u64::MAX);
    probe
        .compile(&client, &mlp(1.0).to_proto_bytes().unwrap(), &opts)
        .unwrap();
    let one: u64 = std::fs::read_dir(probe.dir())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    // Room for two entries (they are about the same size), not three.
    let cache = CompileCache::new(tmp.path().join("bounded"), one * 5 / 2);
    let modules: Vec<Vec<u8>> = [1.0f32, 2.0, 3.0]
        .iter()
        .map(|&s| mlp(s).to_proto_bytes().unwrap())
        .collect();
    for m in &modules[..2] {
        assert_eq!(
            cache.compile(&client, m, &opts).unwrap().1,
            CacheOutcome::Stored
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Use the first again, so the second is the least recently used.
    assert_eq!(
        cache.compile(&client, &modules[0], &opts).unwrap().1,
        CacheOutcome::Hit
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        cache.compile(&client, &modules[2], &opts).unwrap().1,
        CacheOutcome::Stored
    );
    assert_eq!(
        cache.compile(&client, &modules[0], &opts).unwrap().1,
        CacheOutcome::Hit
    );
    assert_eq!(
        cache.compile(&client, &modules[2], &opts).unwrap().1,
        CacheOutcome::Hit
    );
    assert_eq!(
        cache.compile(&client, &modules[1], &opts).unwrap().1,
        CacheOutcome::Stored,
        "evicted"
    );
}

#[test]
fn an_enabled_client_compiles_through_its_cache() {
    let client = Client::cpu(&ClientOptions::cpu(1)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    assert!(client.enable_compile_cache(CompileCache::new(tmp.path(), 1 << 30)));
    let m = mlp(0.25);
    client
        .compile_module(&m, &CompileOptions::default())
        .unwrap();
    let entries = std::fs::read_dir(tmp.path()).unwrap().count();
    assert_eq!(entries, 1);
    client
        .compile_module(&m, &CompileOptions::default())
        .unwrap();
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
