//! Clients created with a key-value store (`Client::with_kv_store`) on the real CPU plugin.
//!
//! What xla-cpu-pjrt 0.0.1 (C API 0.81) does with a store, measured here: it creates the
//! client, never calls the callbacks (not even with `node_id`/`num_nodes`, which it ignores like
//! every option but `cpu_device_count`), and reports process 0 with only its local devices. So
//! it cannot form a client across processes; these tests pin that down and check that a client
//! made with callbacks installed works and keeps the store alive as long as it lives.
use hlo::{ElementType, ModuleBuilder, Shape};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tpu::{Client, ClientOptions, CompileOptions, KeyValueStore, KvError, KvErrorKind, Plugin};

/// An in-memory store that counts every call a plugin makes.
#[derive(Default)]
struct CountingStore {
    calls: AtomicUsize,
    map: Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

impl KeyValueStore for CountingStore {
    fn get(&self, key: &str, _timeout: Duration) -> Result<Vec<u8>, KvError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.map
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| KvError::new(KvErrorKind::DeadlineExceeded, format!("no key {key}")))
    }
    fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self.map.lock().unwrap().get(key).cloned())
    }
    fn put(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.map.lock().unwrap().insert(key.into(), value.to_vec());
        Ok(())
    }
}

/// f32[n] all-reduce (sum) over every replica.
fn all_reduce_module(n: i64) -> Vec<u8> {
    let m = ModuleBuilder::new("all_reduce");
    let b = m.builder("main");
    let x = b
        .parameter(Shape::array(ElementType::F32, [n]), "x")
        .unwrap();
    let r = b.all_reduce_sum(x, &[]).unwrap();
    let entry = b.finish(r).unwrap();
    m.build(entry).unwrap().to_proto_bytes().unwrap()
}

#[test]
fn cpu_plugin_ignores_the_store_and_the_process_options() {
    let plugin = Plugin::cpu_default().expect("CPU plugin");
    let store = Arc::new(CountingStore::default());
    // What JAX passes to a C API plugin once jax.distributed is initialized, for process 1 of 2.
    let options = ClientOptions {
        node_id: Some(1),
        num_nodes: Some(2),
        ..ClientOptions::cpu(2)
    };
    let client = Client::with_kv_store(&plugin, &options, store.clone()).expect("client");
    assert_eq!(client.process_index().unwrap(), 0);
    assert_eq!(client.devices().unwrap().len(), 2);
    assert_eq!(client.addressable_devices().unwrap().len(), 2);

    // A 2-replica all-reduce runs, over this process's two devices only.
    let mut opts = CompileOptions::replicas(2);
    opts.device_assignment = Some(vec![vec![0, 1]]);
    let exe = client.compile(&all_reduce_module(3), &opts).unwrap();
    let devs = exe.addressable_devices().to_vec();
    let xs = [vec![1.5f32, -2.0, 0.25], vec![4.0f32, 8.5, -1.0]];
    let bufs: Vec<_> = xs
        .iter()
        .zip(&devs)
        .map(|(x, d)| client.buffer_from_host(x, &[3], d).unwrap())
        .collect();
    let lists: Vec<Vec<&tpu::Buffer>> = bufs.iter().map(|b| vec![b]).collect();
    let out = exe.execute_sharded(&lists).unwrap();
    for outs in &out {
        let got: Vec<f32> = outs[0].to_host().unwrap();
        assert_eq!(got, vec![5.5, 6.5, -0.75]);
    }
    drop(out);
    drop(bufs);
    drop(exe);
    drop(devs);
    drop(client);
    assert_eq!(store.calls.load(Ordering::SeqCst), 0);
    // The client held the store until it was destroyed.
    assert_eq!(Arc::strong_count(&store), 1);
}
