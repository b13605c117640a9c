//! Cost of one sampling step at Llama (32k) and Qwen2 (152k) vocabulary sizes.
//! Run: `cargo bench -p vlm-inference --bench sampler`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::{Rng, SeedableRng};
use vlm_inference::sampling::{Sampler, SamplingParams};

/// Logits shaped like a real LM's: mostly noise, a few strong candidates.
fn logits(vocab: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut v: Vec<f32> = (0..vocab)
        .map(|_| {
            let u: f32 = rng.random::<f32>() + rng.random::<f32>() + rng.random::<f32>();
            (u - 1.5) * 3.0
        })
        .collect();
    for i in 0..20 {
        v[(i * 7919) % vocab] = 12.0 - i as f32 * 0.4;
    }
    v
}

fn configs() -> Vec<(&'static str, SamplingParams)> {
    let sampled = SamplingParams {
        temperature: 0.7,
        seed: Some(1),
        ..SamplingParams::default()
    };
    vec![
        ("greedy", SamplingParams::default()),
        ("temperature", sampled.clone()),
        (
            "top_p_0.9",
            SamplingParams {
                top_p: 0.9,
                ..sampled.clone()
            },
        ),
        (
            "top_p+penalties+bias+top5_logprobs",
            SamplingParams {
                top_p: 0.9,
                frequency_penalty: 0.5,
                presence_penalty: 0.5,
                logit_bias: (0..50).map(|i| (i * 13, -5.0)).collect(),
                logprobs: true,
                top_logprobs: 5,
                ..sampled
            },
        ),
    ]
}

fn bench_sampler(c: &mut Criterion) {
    for vocab in [32_000usize, 151_936] {
        let x = logits(vocab);
        let mut group = c.benchmark_group(format!("sample_vocab_{vocab}"));
        for (name, params) in configs() {
            group.bench_with_input(BenchmarkId::from_parameter(name), &params, |b, params| {
                let mut s = Sampler::new(params.clone(), 0);
                // 200 tokens of history for the penalties.
                for i in 0..200 {
                    s.observe(i * 31 % vocab as u32);
                }
                b.iter(|| s.sample(std::hint::black_box(&x)).id);
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_sampler);
criterion_main!(benches);
