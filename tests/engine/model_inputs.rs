//! `--model` given as a Hugging Face directory (single and sharded safetensors) and as an
//! architecture-only card (synthetic weights), each written by the test itself.

#[path = "../common/mod.rs"]
mod common;

use profiler_engine::model::config::LlamaConfig;
use profiler_engine::model::synthetic::random_weights;
use serde_json::Value;
use std::path::Path;
use tch::Tensor;

fn tiny() -> LlamaConfig {
    LlamaConfig {
        vocab_size: 16,
        hidden_size: 8,
        intermediate_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: None,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
    }
}

/// config.json and a word-level tokenizer.json for the tiny model.
fn write_config_and_tokenizer(dir: &Path) {
    let c = tiny();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.num_key_value_heads,
        "rms_norm_eps": c.rms_norm_eps, "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_position_embeddings, "tie_word_embeddings": false,
        "torch_dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let words = [
        "<unk>", "hello", "world", "the", "sea", "is", "blue", "and", "wide", "a", "b", "c", "d",
        "e", "f", "g",
    ];
    let vocab: serde_json::Map<String, Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i.into()))
        .collect();
    let tok = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

fn generate(model: &str) -> Value {
    serde_json::from_str(&common::run_ok(&[
        "generate",
        "--model",
        model,
        "--run-on",
        "cpu",
        "--prompt",
        "hello world the sea",
        "--max-new-tokens",
        "6",
        "--ignore-eos",
        "--format",
        "json",
    ]))
    .unwrap()
}

#[test]
fn hugging_face_directory_single_and_sharded_give_the_same_tokens() {
    let weights = random_weights(&tiny(), 5);
    let mut named: Vec<(String, Tensor)> = weights.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));

    let single = common::tempdir();
    write_config_and_tokenizer(single.path());
    Tensor::write_safetensors(&named, single.path().join("model.safetensors")).unwrap();

    let sharded = common::tempdir();
    write_config_and_tokenizer(sharded.path());
    let (a, b) = named.split_at(named.len() / 2);
    let mut map = serde_json::Map::new();
    for (part, file) in [
        (a, "model-00001-of-00002.safetensors"),
        (b, "model-00002-of-00002.safetensors"),
    ] {
        Tensor::write_safetensors(part, sharded.path().join(file)).unwrap();
        for (name, _) in part {
            map.insert(name.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        sharded.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let one = generate(&common::path_str(single.path()));
    let two = generate(&common::path_str(sharded.path()));
    assert_eq!(one["weights"], "safetensors");
    assert_eq!(one["prompt_tokens"], serde_json::json!([1, 2, 3, 4]));
    assert_eq!(one["generated_tokens"].as_array().unwrap().len(), 6);
    assert_eq!(
        one["generated_tokens"], two["generated_tokens"],
        "sharding changes nothing"
    );

    // A shard listed in the index but missing is named.
    std::fs::remove_file(sharded.path().join("model-00002-of-00002.safetensors")).unwrap();
    let out = common::run_err(&[
        "generate",
        "--model",
        &common::path_str(sharded.path()),
        "--prompt",
        "hello",
    ]);
    common::assert_one_line_error(&out, "model-00002-of-00002.safetensors");
}

/// An architecture-only card runs with seeded random weights, labelled synthetic.
#[test]
fn architecture_only_card_runs_synthetic_and_says_so() {
    let home = common::tempdir();
    let models = home.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::os::unix::fs::symlink(
        common::home().join("profiles"),
        home.path().join("profiles"),
    )
    .unwrap();
    let c = tiny();
    std::fs::write(
        models.join("tiny.toml"),
        format!(
            "name = \"tiny\"\ndescription = \"test\"\nsource = \"written by the test\"\ndefault_dtype = \"f32\"\n\
             [architecture]\nvocab_size = {}\nhidden_size = {}\nintermediate_size = {}\nnum_hidden_layers = {}\n\
             num_attention_heads = {}\nnum_key_value_heads = {}\nrms_norm_eps = 1e-5\nrope_theta = 10000.0\n\
             max_position_embeddings = 64\ntie_word_embeddings = true\n",
            c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(common::profiler_bin())
            .env("PROFILER_HOME", home.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "run",
        "--model",
        "tiny",
        "--run-on",
        "cpu",
        "--input-len",
        "8",
        "--output-len",
        "4",
        "--requests",
        "2",
        "--no-host-check",
        "-q",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["environment"]["weights_kind"], "synthetic");
    assert_eq!(r["output_tokens"], 8);
    let out = run(&["generate", "--model", "tiny", "--prompt", "hi"]);
    assert!(!out.status.success());
    common::assert_one_line_error(&out, "synthetic weights and no tokenizer");
}

/// A Hugging Face directory whose config.json describes a model too large for this machine
/// is refused with the numbers before any shard is read (the shard here is not even valid).
#[test]
fn hugging_face_directory_too_large_for_memory_is_refused_before_reading() {
    let dir = common::tempdir();
    write_config_and_tokenizer(dir.path());
    // Llama-3.1-405B's shape: 405 G weights, 1.6 TB as f32.
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 16384,
        "intermediate_size": 53248, "num_hidden_layers": 126, "num_attention_heads": 128,
        "num_key_value_heads": 8, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "max_position_embeddings": 131072, "tie_word_embeddings": false
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let d = common::path_str(dir.path());
    let out = common::run_err(&["generate", "--model", &d, "--prompt", "hello"]);
    common::assert_one_line_error(&out, "GiB of memory is available");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&d) && err.contains("config.json"), "{err}");
}
