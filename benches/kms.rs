//! The KMS plugin's cost per call: sealing a 32-byte data-key seed (what
//! kube-apiserver sends) with certop's envelope against bare aws-lc-rs
//! AES-256-GCM, and Encrypt / Decrypt as kube-apiserver calls them, over
//! gRPC on a unix socket to a plugin served in-process. `make bench` runs
//! it; figures go in docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use certop::kms::envelope;
use certop::kms::key_dir::KeyDir;
use certop::kms::proto::{DecryptRequest, EncryptRequest};
use certop::kms::server::{self, Plugin};
use criterion::{Criterion, criterion_group, criterion_main};

const SEED: [u8; 32] = [42; 32];

fn kms(c: &mut Criterion) {
    let kek = [7u8; envelope::KEK_LEN];
    let mut group = c.benchmark_group("kms");
    group.bench_function("bare AES-256-GCM seal (32 B)", |b| {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &kek).expect("key"));
        b.iter(|| {
            let mut buf = SEED.to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key([1; 12]),
                Aad::empty(),
                &mut buf,
            )
            .expect("seal");
            black_box(buf)
        })
    });
    group.bench_function("envelope seal (32 B)", |b| {
        b.iter(|| black_box(envelope::seal("kek-bench", &kek, &SEED).expect("seal")))
    });
    let sealed = envelope::seal("kek-bench", &kek, &SEED).expect("seal");
    group.bench_function("envelope open (32 B)", |b| {
        b.iter(|| black_box(envelope::open(&sealed, &kek).expect("open")))
    });

    // Over gRPC, as kube-apiserver calls it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tmp");
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).expect("keys");
    let socket = tmp.path().join("kms.sock");
    let plugin = Arc::new(Plugin::new(KeyDir::open(&keys).expect("dir")).expect("plugin"));
    let serving = socket.clone();
    runtime.spawn(async move { server::serve(&serving, plugin, std::future::pending()).await });
    let mut client = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(c) = server::connect(&socket).await {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the plugin did not start");
    });
    group.bench_function("gRPC Encrypt (32 B)", |b| {
        b.iter(|| {
            runtime
                .block_on(client.encrypt(EncryptRequest {
                    plaintext: SEED.to_vec(),
                    uid: "bench".into(),
                }))
                .expect("encrypt")
        })
    });
    let ciphertext = runtime
        .block_on(client.encrypt(EncryptRequest {
            plaintext: SEED.to_vec(),
            uid: "bench".into(),
        }))
        .expect("encrypt")
        .into_inner();
    group.bench_function("gRPC Decrypt (32 B)", |b| {
        b.iter(|| {
            runtime
                .block_on(client.decrypt(DecryptRequest {
                    ciphertext: ciphertext.ciphertext.clone(),
                    uid: "bench".into(),
                    key_id: ciphertext.key_id.clone(),
                    annotations: Default::default(),
                }))
                .expect("decrypt")
        })
    });
    group.finish();
}

criterion_group!(benches, kms);
criterion_main!(benches);
