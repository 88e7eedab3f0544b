//! Correctness against Hugging Face transformers on the same GGUF (tests/fixtures/reference.json,
//! written by scripts/make_reference.py): prompt token ids, 32-token greedy continuations
//! through the real binary, and first-step logits through the library.

#[path = "../common/mod.rs"]
mod common;

use profiler_engine::generate::{generate, GenerateOptions, Sampling};
use profiler_engine::model::llama::{Llama, WeightsMode};
use profiler_engine::model::load;
use profiler_engine::paths::Home;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn fixtures() -> Value {
    let text = std::fs::read_to_string(common::home().join("tests/fixtures/reference.json"))
        .expect("tests/fixtures/reference.json is missing");
    serde_json::from_str(&text).expect("reference.json does not parse")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Compares a continuation with the reference: they must agree until the reference's own
/// top-2 logit gap drops below 1e-3 (a near tie, where rounding may pick either token).
fn assert_same_continuation(name: &str, ours: &[u32], reference: &[u32], gaps: &[f64]) {
    assert_eq!(ours.len(), reference.len(), "{name}: length");
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        if a != b {
            assert!(
                gaps[i] < 1e-3,
                "{name}: step {i}: ours {a}, transformers {b}, and transformers' top-2 gap is {} (not a tie)",
                gaps[i]
            );
            return;
        }
    }
}

/// The `--matmul-precision` values to check: `high` with the `bf16-tests` feature, which
/// scripts/test turns on where the CPU has bf16 matrix instructions (then it must work).
fn precisions() -> Vec<&'static str> {
    if cfg!(feature = "bf16-tests") {
        profiler_engine::model::bf16x3::check_available()
            .expect("bf16-tests is on, so --matmul-precision high must be available");
        vec!["highest", "high"]
    } else {
        vec!["highest"]
    }
}

/// Greedy continuations through the binary, in f32 with IEEE products and with prompts'
/// products as bf16x3 (the "unicode" and "long" cases have prompts long enough for it).
#[test]
fn binary_matches_transformers_token_for_token() {
    common::default_weights();
    let f = fixtures();
    let precisions = precisions();
    for (case, &precision) in f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| precisions.iter().map(move |p| (c, p)))
    {
        let name = &format!("{} ({precision})", case["name"].as_str().unwrap());
        let steps = case["greedy_tokens"].as_array().unwrap().len().to_string();
        let mut args = vec![
            "generate",
            "--model",
            "llama",
            "--run-on",
            "cpu",
            "--format",
            "json",
            "--matmul-precision",
            precision,
            "--ignore-eos",
            "--max-new-tokens",
            &steps,
            "--prompt",
            case["prompt"].as_str().unwrap(),
        ];
        if case["chat"].as_bool().unwrap() {
            args.push("--chat");
        }
        let out: Value =
            serde_json::from_str(&common::run_ok(&args)).expect("generate --format json");
        assert_eq!(out["weights"], "gguf");
        assert_eq!(
            ids(&out["prompt_tokens"]),
            ids(&case["prompt_tokens"]),
            "{name}: prompt token ids"
        );
        let gaps: Vec<f64> = case["top2_gap"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_f64().unwrap())
            .collect();
        assert_same_continuation(
            name,
            &ids(&out["generated_tokens"]),
            &ids(&case["greedy_tokens"]),
            &gaps,
        );
    }
}

#[test]
fn first_step_logits_match_within_1e3_relative() {
    common::default_weights();
    let f = fixtures();
    let home = Home::at(common::home());
    let r = load::resolve("llama", &home).unwrap();
    let w = load::load(&r, &home, 0, (WeightsMode::Dense(Kind::Float), Device::Cpu)).unwrap();
    let tok = w.tokenizer.as_ref().unwrap();
    let text_fed: Vec<(String, Vec<u32>)> = f["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["text_fed"].as_str().unwrap().to_string(),
                ids(&c["prompt_tokens"]),
            )
        })
        .collect();
    for (text, want) in &text_fed {
        assert_eq!(
            &tok.encode(text).unwrap(),
            want,
            "library tokenizer on {text:?}"
        );
    }
    let (model, _) = load::build_model(w, Device::Cpu, WeightsMode::Dense(Kind::Float)).unwrap();
    let _g = tch::no_grad_guard();
    let model = first_step_logits_match(&f, model, "highest");
    if precisions().contains(&"high") {
        first_step_logits_match(&f, model.split_f32_matmuls().unwrap(), "high");
    }
}

/// The first-step logits of every case within 1e-3 relative of transformers'; gives the
/// model back.
fn first_step_logits_match(f: &Value, model: Llama, precision: &str) -> Llama {
    for case in f["cases"].as_array().unwrap() {
        let name = &format!("{} ({precision})", case["name"].as_str().unwrap());
        let p = ids(&case["prompt_tokens"]);
        let n = p.len() as i64;
        let toks =
            Tensor::from_slice(&p.iter().map(|&x| x as i64).collect::<Vec<_>>()).view([1, n]);
        let pos = Tensor::arange(n, (Kind::Int64, Device::Cpu)).view([1, n]);
        let mut cache = model.new_cache(1, p.len()).unwrap();
        let logits = model.forward(&toks, &pos, None, &mut cache).unwrap().get(0);
        let sample = &case["first_step_logits_sample"];
        for (id, want) in ids(&sample["ids"])
            .iter()
            .zip(sample["logits"].as_array().unwrap())
        {
            let want = want.as_f64().unwrap();
            let got = logits.double_value(&[*id as i64]);
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{name}: logit of id {id}: ours {got}, transformers {want}"
            );
        }
        let top = case["first_step_top5"][0]["id"].as_u64().unwrap();
        assert_eq!(
            logits.argmax(0, false).int64_value(&[]) as u64,
            top,
            "{name}: top-1 id"
        );
    }
    model
}

/// Two prompts of different lengths decoded together (left padding) give transformers'
/// batched greedy tokens.
#[test]
fn left_padded_batch_matches_transformers() {
    common::default_weights();
    let f = fixtures();
    let b = &f["batch"];
    let home = Home::at(common::home());
    let w = load::load(
        &load::resolve("llama", &home).unwrap(),
        &home,
        0,
        (WeightsMode::Dense(Kind::Float), Device::Cpu),
    )
    .unwrap();
    let (model, _) = load::build_model(w, Device::Cpu, WeightsMode::Dense(Kind::Float)).unwrap();
    // Unpadded prompts: the ids where the attention mask is 1.
    let prompts: Vec<Vec<u32>> = b["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["attention_mask"].as_array().unwrap())
        .map(|(row, mask)| {
            ids(row)
                .into_iter()
                .zip(ids(mask))
                .filter(|(_, m)| *m == 1)
                .map(|(t, _)| t)
                .collect()
        })
        .collect();
    let want: Vec<Vec<u32>> = b["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let n = want[0].len();
    let longest = prompts.iter().map(Vec::len).max().unwrap();
    let mut cache = model.new_cache(prompts.len(), longest + n).unwrap();
    let opts = GenerateOptions {
        max_new_tokens: n,
        eos_ids: vec![],
        ignore_eos: true,
        sampling: Sampling::greedy(),
    };
    let g = generate(&model, &mut cache, &prompts, &opts, None, |_| {}).unwrap();
    assert_eq!(g.tokens, want);
}
