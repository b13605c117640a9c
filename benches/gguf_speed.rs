//! Prefill and decode speed of a GGUF language model, in tokens per second.
//!
//!     cargo bench -p vlm-inference --bench gguf_speed -- [MODEL.gguf] [--prompt-tokens N]
//!         [--decode-tokens N] [--reps N] [--threads N] [--keep-quant-types] [--json]
//!
//! Prefill: one forward pass over an N-token prompt (default 200) into an empty cache.
//! Decode: N greedy steps (default 128) after that prompt, EOS ignored. Each is run `reps`
//! times (default 3) after one warm-up; the best run is reported, as llama-bench does.
//! `--keep-quant-types` runs block types we have no kernel for on candle's kernels instead
//! of converting them at load (the server's flag of the same name).
//! `benches/compare_llama_cpp.py` runs this and llama.cpp side by side.

use std::path::PathBuf;
use std::time::Instant;

use vlm_inference::nn::linear::QuantKernels;
use vlm_inference::{LoadOptions, PreparedPrompt, VisionLanguageModel};

const TEXT: &str = "The history of the printing press begins in the fifteenth century, when \
Johannes Gutenberg combined movable metal type, oil-based inks and a wooden press adapted from \
those used to make wine. Before that, books were copied by hand, which made them rare and \
expensive. Within fifty years presses were working in more than two hundred cities across \
Europe, and millions of volumes had been printed. The new technology changed how knowledge \
spread: scientists could share results quickly, reformers could reach large audiences, and \
ordinary people gained access to texts that had once belonged only to monasteries and \
universities. Printing also standardized spelling and grammar, helped national languages \
grow, and created new trades such as typefounding, bookselling and publishing. Historians \
still debate which of these effects mattered most, but few doubt that the press was one of \
the most important inventions of the second millennium. ";

struct Args {
    model: PathBuf,
    prompt_tokens: usize,
    decode_tokens: usize,
    reps: usize,
    threads: Option<usize>,
    keep_quant_types: bool,
    json: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        model: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/.cache/SmolLM2-135M-Instruct.Q4_1.gguf"
        )),
        prompt_tokens: 200,
        decode_tokens: 128,
        reps: 3,
        threads: None,
        keep_quant_types: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--prompt-tokens" => args.prompt_tokens = num("--prompt-tokens"),
            "--decode-tokens" => args.decode_tokens = num("--decode-tokens"),
            "--reps" => args.reps = num("--reps").max(1),
            "--threads" => args.threads = Some(num("--threads")),
            "--json" => args.json = true,
            "--keep-quant-types" => args.keep_quant_types = true,
            "--bench" => {}
            other if other.ends_with(".gguf") => args.model = PathBuf::from(other),
            other => eprintln!("ignoring argument {other}"),
        }
    }
    args
}

fn main() -> vlm_inference::Result<()> {
    let args = parse_args();
    vlm_inference::threads::configure_cpu_threads(args.threads);
    let opts = LoadOptions {
        quant_kernels: if args.keep_quant_types {
            QuantKernels::AsStored
        } else {
            QuantKernels::Convert
        },
        ..LoadOptions::default()
    };
    let t = Instant::now();
    let model = VisionLanguageModel::load(&args.model, &opts)?;
    let load_secs = t.elapsed().as_secs_f64();
    let mut ids = Vec::new();
    while ids.len() < args.prompt_tokens {
        ids.extend(model.tokenizer().encode(TEXT)?);
    }
    ids.truncate(args.prompt_tokens);
    let prompt = PreparedPrompt {
        prompt: String::new(),
        input_ids: ids,
        images: None,
    };
    let mut best_prefill = f64::MAX;
    let mut best_decode = f64::MAX;
    for rep in 0..=args.reps {
        let mut cache = model.new_cache();
        let t = Instant::now();
        let mut logits = model.prefill_last_logits(&prompt, &mut cache)?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..args.decode_tokens {
            let next = logits.argmax(0)?.to_scalar::<u32>()?;
            logits = model.model().decode_step(next, &mut cache)?;
        }
        let decode = t.elapsed().as_secs_f64();
        if rep > 0 {
            best_prefill = best_prefill.min(prefill);
            best_decode = best_decode.min(decode);
        }
    }
    let prefill_tps = args.prompt_tokens as f64 / best_prefill;
    let decode_tps = args.decode_tokens as f64 / best_decode;
    if args.json {
        println!(
            "{{\"prefill_tokens\": {}, \"prefill_tok_s\": {prefill_tps:.2}, \"decode_tokens\": {}, \"decode_tok_s\": {decode_tps:.2}, \"load_s\": {load_secs:.3}}}",
            args.prompt_tokens, args.decode_tokens
        );
    } else {
        println!(
            "model:   {} (loaded in {load_secs:.2} s)",
            args.model.display()
        );
        println!(
            "prefill: {prefill_tps:8.1} tok/s ({} tokens)",
            args.prompt_tokens
        );
        println!(
            "decode:  {decode_tps:8.1} tok/s ({} tokens)",
            args.decode_tokens
        );
    }
    Ok(())
}
