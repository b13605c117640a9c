//! The per-choice sampler: logit processing, the distribution and the draw.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SamplingParams;

/// One alternative at a position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopLogprob {
    /// Token id.
    pub id: u32,
    /// Its log probability under the distribution sampled from.
    pub logprob: f32,
}

/// The outcome of one sampling step.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token.
    pub id: u32,
    /// Its log probability under the distribution sampled from (NaN when neither
    /// `logprobs` nor `top_logprobs` was requested and decoding is greedy: not computed).
    pub logprob: f32,
    /// The most likely alternatives (`top_logprobs` of them), most likely first.
    pub top: Vec<TopLogprob>,
}

/// Samples the tokens of one choice. Holds the choice's own RNG and token counts.
///
/// The distribution sampled from is `softmax((logits + bias − penalties) / temperature)`,
/// restricted to the nucleus and renormalized when `top_p < 1`. Greedy decoding
/// (temperature 0) takes the argmax and reports log probabilities at temperature 1.
/// Tokens outside the nucleus have log probability −∞.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    counts: HashMap<u32, u32>,
    scratch: Vec<f32>,
    probs: Vec<f32>,
    order: Vec<u32>,
}

impl Sampler {
    /// A sampler for choice `stream` of a request: with a seed, choice `i` of the same
    /// request always draws the same numbers; without one, fresh entropy.
    pub fn new(params: SamplingParams, stream: u64) -> Self {
        let mut rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        rng.set_stream(stream);
        Self {
            params,
            rng,
            counts: HashMap::new(),
            scratch: Vec::new(),
            probs: Vec::new(),
            order: Vec::new(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Processes `logits` (one position, full vocabulary), draws a token and records it
    /// for the penalties.
    pub fn sample(&mut self, logits: &[f32]) -> Sampled {
        self.process(logits);
        let greedy = self.params.is_greedy();
        let want_logprobs = self.params.logprobs || self.params.top_logprobs > 0;
        if greedy && !want_logprobs {
            // Fast path: no distribution needed.
            let id = argmax(&self.scratch);
            self.observe(id);
            return Sampled {
                id,
                logprob: f32::NAN,
                top: Vec::new(),
            };
        }
        let x = &self.scratch;
        // log_softmax: logprob_i = x_i - lse; the unnormalized probabilities are kept in
        // `self.probs` so that each exp is computed once.
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.probs.clear();
        self.probs.extend(x.iter().map(|v| (v - max).exp()));
        let sum: f32 = self.probs.iter().sum();
        let mut lse = max + sum.ln();
        let restricted = !greedy && self.params.top_p < 1.0;
        let id = if greedy {
            argmax(x)
        } else if restricted {
            let mass = self.nucleus(sum);
            let u = self.rng.random::<f32>() * mass * sum;
            let mut acc = 0.0;
            let mut chosen = self.order[self.order.len() - 1];
            for &i in &self.order {
                acc += self.probs[i as usize];
                if u < acc {
                    chosen = i;
                    break;
                }
            }
            // Renormalize to the nucleus.
            lse += mass.ln();
            chosen
        } else {
            let u = self.rng.random::<f32>() * sum;
            let mut acc = 0.0;
            let mut chosen = argmax(x);
            for (i, p) in self.probs.iter().enumerate() {
                acc += p;
                if u < acc {
                    chosen = i as u32;
                    break;
                }
            }
            chosen
        };
        let x = &self.scratch;
        let order = &self.order;
        // Tokens outside the nucleus (kept in `order`) have probability 0.
        let lp = |i: u32| -> f32 {
            if !restricted || order.contains(&i) {
                x[i as usize] - lse
            } else {
                f32::NEG_INFINITY
            }
        };
        let top = if self.params.top_logprobs > 0 {
            top_k(x, self.params.top_logprobs)
                .into_iter()
                .map(|i| TopLogprob {
                    id: i,
                    logprob: lp(i),
                })
                .collect()
        } else {
            Vec::new()
        };
        let logprob = lp(id);
        self.observe(id);
        Sampled { id, logprob, top }
    }

    /// Copies `logits` into the scratch buffer with bias, penalties and temperature applied.
    fn process(&mut self, logits: &[f32]) {
        let p = &self.params;
        let x = &mut self.scratch;
        x.clear();
        x.extend_from_slice(logits);
        for &(id, bias) in &p.logit_bias {
            if let Some(v) = x.get_mut(id as usize) {
                *v += bias;
            }
        }
        if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            for (&id, &count) in &self.counts {
                if let Some(v) = x.get_mut(id as usize) {
                    *v -= p.frequency_penalty * count as f32 + p.presence_penalty;
                }
            }
        }
        if !p.is_greedy() && p.temperature != 1.0 {
            let inv = 1.0 / p.temperature;
            x.iter_mut().for_each(|v| *v *= inv);
        }
    }

    /// Records a generated token for the penalties (done by [`Sampler::sample`]).
    pub fn observe(&mut self, id: u32) {
        *self.counts.entry(id).or_insert(0) += 1;
    }

    /// The processed logits of the last step (bias, penalties and temperature applied).
    pub fn processed(&self) -> &[f32] {
        &self.scratch
    }

    /// Sorts the most likely tokens into `self.order` until their mass reaches `top_p`;
    /// truncates `order` to the nucleus and returns its mass. `sum` normalizes `probs`.
    fn nucleus(&mut self, sum: f32) -> f32 {
        let x = &self.scratch;
        let probs = &self.probs;
        let n = x.len();
        self.order.clear();
        self.order.extend(0..n as u32);
        let desc = |a: &u32, b: &u32| x[*b as usize].total_cmp(&x[*a as usize]);
        let mut k = n.min(64);
        loop {
            if k < n {
                self.order.select_nth_unstable_by(k - 1, desc);
            }
            self.order[..k].sort_unstable_by(desc);
            let sorted = self.order[..k].iter().map(|&i| probs[i as usize] / sum);
            if let Some((kept, mass)) = top_p_cutoff(sorted, self.params.top_p) {
                self.order.truncate(kept);
                return mass;
            }
            if k == n {
                // Rounding left the total just short of top_p: keep everything.
                return self.order.iter().map(|&i| probs[i as usize] / sum).sum();
            }
            k = (k * 4).min(n);
        }
    }
}

/// Given probabilities in descending order, the size of the smallest prefix whose mass
/// reaches `top_p`, and that mass; `None` if the whole slice falls short.
pub fn top_p_cutoff(
    sorted_probs: impl IntoIterator<Item = f32>,
    top_p: f32,
) -> Option<(usize, f32)> {
    let mut mass = 0.0;
    for (i, p) in sorted_probs.into_iter().enumerate() {
        mass += p;
        if mass >= top_p {
            return Some((i + 1, mass));
        }
    }
    None
}

/// Index of the largest value (the first one on ties, like `torch.argmax`).
fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_value {
            best_value = v;
            best = i;
        }
    }
    best as u32
}

/// The `k` largest values' indices, largest first.
fn top_k(x: &[f32], k: usize) -> Vec<u32> {
    let k = k.min(x.len());
    let mut idx: Vec<u32> = (0..x.len() as u32).collect();
    let desc = |a: &u32, b: &u32| x[*b as usize].total_cmp(&x[*a as usize]);
    if k < idx.len() && k > 0 {
        idx.select_nth_unstable_by(k - 1, desc);
    }
    idx.truncate(k);
    idx.sort_unstable_by(desc);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplingParams {
        SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        }
    }

    fn ln_probs(p: &[f32]) -> Vec<f32> {
        p.iter().map(|v| v.ln()).collect()
    }

    #[test]
    fn penalty_formula_matches_openai() {
        let mut s = Sampler::new(
            SamplingParams {
                frequency_penalty: 0.5,
                presence_penalty: 1.0,
                ..params()
            },
            0,
        );
        s.observe(1);
        s.observe(1);
        s.observe(2);
        s.sample(&[1.0, 2.0, 3.0, 4.0]);
        // logit[t] -= freq * count[t] + presence * (count[t] > 0)
        assert_eq!(s.processed(), &[1.0, 2.0 - 1.0 - 1.0, 3.0 - 0.5 - 1.0, 4.0]);
    }

    #[test]
    fn logit_bias_bans_and_forces() {
        let logits = [0.3f32, 2.0, 1.0, -0.5, 0.9];
        for seed in 0..300 {
            let mut ban = Sampler::new(
                SamplingParams {
                    logit_bias: vec![(1, -100.0)],
                    seed: Some(seed),
                    ..params()
                },
                0,
            );
            assert_ne!(ban.sample(&logits).id, 1);
            let mut force = Sampler::new(
                SamplingParams {
                    logit_bias: vec![(3, 100.0)],
                    seed: Some(seed),
                    ..params()
                },
                0,
            );
            assert_eq!(force.sample(&logits).id, 3);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        let probs = [0.05f32, 0.5, 0.15, 0.3];
        assert_eq!(
            top_p_cutoff([0.5, 0.3, 0.15, 0.05], 0.8).map(|c| c.0),
            Some(2)
        );
        assert_eq!(
            top_p_cutoff([0.5, 0.3, 0.15, 0.05], 0.81).map(|c| c.0),
            Some(3)
        );
        assert_eq!(top_p_cutoff([0.5, 0.3], 0.9), None);
        let logits = ln_probs(&probs);
        for (top_p, allowed) in [
            (0.5f32, vec![1u32]),
            (0.79, vec![1, 3]),
            (0.81, vec![1, 3, 2]),
        ] {
            let mut seen = std::collections::HashSet::new();
            let mut s = Sampler::new(
                SamplingParams {
                    top_p,
                    seed: Some(7),
                    ..params()
                },
                0,
            );
            for _ in 0..2000 {
                let out = s.sample(&logits);
                assert!(allowed.contains(&out.id), "top_p {top_p}: got {}", out.id);
                seen.insert(out.id);
                // Log probability under the renormalized nucleus.
                let mass: f32 = allowed.iter().map(|&i| probs[i as usize]).sum();
                let expect = (probs[out.id as usize] / mass).ln();
                assert!(
                    (out.logprob - expect).abs() < 1e-5,
                    "{} vs {expect}",
                    out.logprob
                );
            }
            assert_eq!(seen.len(), allowed.len(), "top_p {top_p}");
        }
    }

    #[test]
    fn tiny_temperature_equals_greedy() {
        let logits = [0.1f32, 0.7, 0.69, -2.0, 0.3];
        for seed in 0..200 {
            let mut s = Sampler::new(
                SamplingParams {
                    temperature: 1e-3,
                    seed: Some(seed),
                    ..params()
                },
                0,
            );
            assert_eq!(s.sample(&logits).id, 1);
        }
        let mut g = Sampler::new(SamplingParams::default(), 0);
        assert_eq!(g.sample(&logits).id, 1);
    }

    #[test]
    fn seeds_reproduce_and_differ() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed: u64, stream: u64| -> Vec<u32> {
            let mut s = Sampler::new(
                SamplingParams {
                    seed: Some(seed),
                    ..params()
                },
                stream,
            );
            (0..40).map(|_| s.sample(&logits).id).collect()
        };
        assert_eq!(run(42, 0), run(42, 0));
        assert_ne!(run(42, 0), run(43, 0));
        assert_ne!(run(42, 0), run(42, 1), "choices of one request must differ");
    }

    #[test]
    fn sampling_at_temperature_one_matches_the_distribution() {
        // Total variation distance between empirical and true distribution over 100k draws;
        // its expected value here is ~0.003, so 0.01 fails only on a real bias.
        let probs = [0.4f32, 0.25, 0.15, 0.1, 0.06, 0.04];
        let logits = ln_probs(&probs);
        let mut s = Sampler::new(
            SamplingParams {
                seed: Some(1234),
                ..params()
            },
            0,
        );
        let n = 100_000;
        let mut counts = [0usize; 6];
        for _ in 0..n {
            counts[s.sample(&logits).id as usize] += 1;
        }
        let tv: f32 = probs
            .iter()
            .zip(counts)
            .map(|(p, c)| (p - c as f32 / n as f32).abs())
            .sum::<f32>()
            / 2.0;
        assert!(tv < 0.01, "total variation {tv}, counts {counts:?}");
    }

    #[test]
    fn logprobs_are_consistent() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 7) % 13) as f32 * 0.3).collect();
        for (temperature, top_p) in [(0.0f32, 1.0f32), (1.0, 1.0), (0.7, 0.9), (1.3, 0.5)] {
            let mut s = Sampler::new(
                SamplingParams {
                    temperature,
                    top_p,
                    seed: Some(3),
                    logprobs: true,
                    top_logprobs: 20,
                    ..SamplingParams::default()
                },
                0,
            );
            for _ in 0..50 {
                let out = s.sample(&logits);
                assert_eq!(out.top.len(), 20);
                let mass: f32 = out.top.iter().map(|t| t.logprob.exp()).sum();
                assert!(mass <= 1.0 + 1e-4, "mass {mass}");
                assert!(out.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
                if let Some(entry) = out.top.iter().find(|t| t.id == out.id) {
                    assert_eq!(entry.logprob, out.logprob);
                }
                assert!(out.logprob <= 0.0 && out.logprob.is_finite());
            }
        }
    }
}
