//! Settings named in the library's messages. A value such as the compiled length or the
//! TP degree reaches the library from a flag, a `--neuron-config` file or a result file,
//! so the library names it neutrally (`seq_len`, as in configs and JSON) and whoever shows
//! the message names it as the user gave it: the command line by its flag (`--seq-len`),
//! or by the file it was read from.

use std::fmt;

macro_rules! settings {
    ($($(#[$doc:meta])* $v:ident = $key:literal, $flag:literal;)*) => {
        /// A setting a request carries, named by [`Setting::key`] in plain messages and by
        /// [`Setting::flag`] on the command line.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Setting {
            $($(#[$doc])* $v,)*
        }

        impl Setting {
            /// Every setting, in declaration order.
            pub const ALL: &'static [Setting] = &[$(Setting::$v,)*];

            /// The neutral name, as in configuration files and JSON reports (`seq_len`).
            pub fn key(self) -> &'static str {
                match self {
                    $(Setting::$v => $key,)*
                }
            }

            /// The command-line flag that sets it (`--seq-len`).
            pub fn flag(self) -> &'static str {
                match self {
                    $(Setting::$v => $flag,)*
                }
            }
        }
    };
}

settings! {
    /// Tensor-parallel degree of one replica.
    Tp = "tp", "--tp";
    /// Data-parallel replicas on one instance.
    Dp = "dp", "--dp";
    /// Expert-parallel degree inside one replica's TP group.
    EpDegree = "ep_degree", "--ep-degree";
    /// Sequences per static batch.
    Batch = "batch", "--batch";
    /// Continuous-batching slots / compiled batch.
    MaxNumSeqs = "max_num_seqs", "--max-num-seqs";
    /// Compiled positions.
    SeqLen = "seq_len", "--seq-len";
    /// Prompts per context-encoding call.
    CtxBatchSize = "ctx_batch_size", "--ctx-batch-size";
    /// Context-encoding and token-generation buckets.
    Buckets = "buckets", "--buckets";
    /// Token budget of one step (chunked prefill).
    MaxNumBatchedTokens = "max_num_batched_tokens", "--max-num-batched-tokens";
    /// Prompt tokens.
    InputLen = "input_len", "--input-len";
    /// Output tokens.
    OutputLen = "output_len", "--output-len";
    /// Spread of prompt lengths.
    InputLenStddev = "input_len_stddev", "--input-len-stddev";
    /// Spread of output lengths.
    OutputLenStddev = "output_len_stddev", "--output-len-stddev";
    /// One instance type.
    Instance = "instance", "--instance";
    /// Device profiles chosen.
    Device = "device", "--device";
    /// Model card.
    Model = "model", "--model";
    /// Serving dtype of the weights.
    WeightsDtype = "weights_dtype", "--weights-dtype";
    /// Time-to-first-token objective, ms.
    SloTtftMs = "slo_ttft_ms", "--slo-ttft-ms";
    /// Time-per-output-token objective, ms.
    SloTpotMs = "slo_tpot_ms", "--slo-tpot-ms";
    /// Percentile the objectives are judged at.
    SloPercentile = "slo_percentile", "--slo-percentile";
    /// Open-loop arrival rate, requests per second.
    Rate = "rate", "--rate";
    /// Closed-loop concurrency.
    Concurrency = "concurrency", "--concurrency";
    /// Burstiness of open-loop arrivals.
    Burstiness = "burstiness", "--burstiness";
    /// Requests sent.
    Requests = "requests", "--requests";
    /// Seconds of arrivals.
    Duration = "duration", "--duration";
    /// Latency parameters fitted.
    Fit = "fit", "--fit";
    /// Calibration points file.
    Points = "points", "--points";
    /// Writing the fitted parameters back.
    Write = "write", "--write";
    /// Profile file written by a fit.
    WriteProfile = "write_profile", "--write-profile";
    /// A Neuron-compiled model's configuration.
    NeuronConfig = "neuron_config", "--neuron-config";
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Name(Setting),
}

/// An error (or a reason) whose message names settings: its `Display` names them by their
/// keys and names no flag; [`SettingError::render`] names them as the caller chooses.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SettingError {
    parts: Vec<Part>,
}

impl SettingError {
    /// A message that starts with `setting`'s name followed by `text`.
    pub fn new(setting: Setting, text: impl Into<String>) -> Self {
        SettingError::default().then(setting, text)
    }

    /// A message that starts with `text`.
    pub fn text(text: impl Into<String>) -> Self {
        SettingError {
            parts: vec![Part::Text(text.into())],
        }
    }

    /// Appends `setting`'s name, then `text`.
    pub fn then(mut self, setting: Setting, text: impl Into<String>) -> Self {
        self.parts.push(Part::Name(setting));
        let t = text.into();
        if !t.is_empty() {
            self.parts.push(Part::Text(t));
        }
        self
    }

    /// `e`'s chain as one message ("outer: inner", as `{:#}` writes it), keeping the
    /// settings its [`SettingError`]s name: a reason kept in a report, for its reader to name.
    pub fn from_chain(e: &anyhow::Error) -> Self {
        let mut out = SettingError::default();
        for (i, c) in e.chain().enumerate() {
            if i > 0 {
                out.parts.push(Part::Text(": ".into()));
            }
            match c.downcast_ref::<SettingError>() {
                Some(s) => out.parts.extend(s.parts.iter().cloned()),
                None => out.parts.push(Part::Text(c.to_string())),
            }
        }
        out
    }

    /// The settings named, in order, each once.
    pub fn settings(&self) -> Vec<Setting> {
        let mut out = Vec::new();
        for p in &self.parts {
            if let Part::Name(s) = p {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
        }
        out
    }

    /// The message with each setting named by `name`.
    pub fn render(&self, name: &dyn Fn(Setting) -> String) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Name(s) => name(*s),
            })
            .collect()
    }

    /// The message with each setting named by its flag.
    pub fn with_flags(&self) -> String {
        self.render(&|s| s.flag().to_string())
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&|s| s.key().to_string()))
    }
}

impl std::error::Error for SettingError {}

/// `e`'s chain as `{:#}` writes it ("outer: inner"), with the settings of every
/// [`SettingError`] in it named by `name`.
pub fn render_chain(e: &anyhow::Error, name: &dyn Fn(Setting) -> String) -> String {
    e.chain()
        .map(|c| match c.downcast_ref::<SettingError>() {
            Some(s) => s.render(name),
            None => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// `e`'s chain as `{:#}` writes it, every setting named by its flag.
pub fn chain_with_flags(e: &anyhow::Error) -> String {
    render_chain(e, &|s| s.flag().to_string())
}

/// The settings named anywhere in `e`'s chain, in order, each once.
pub fn chain_settings(e: &anyhow::Error) -> Vec<Setting> {
    let mut out = Vec::new();
    for s in e
        .chain()
        .filter_map(|c| c.downcast_ref::<SettingError>())
        .flat_map(SettingError::settings)
    {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Whether `e`'s chain holds a [`SettingError`].
pub fn names_settings(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<SettingError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn flags_are_the_keys_with_dashes() {
        for s in Setting::ALL {
            assert_eq!(
                s.flag(),
                format!("--{}", s.key().replace('_', "-")),
                "{s:?}"
            );
        }
    }

    fn example() -> SettingError {
        SettingError::new(Setting::Dp, " 3 × ").then(
            Setting::Tp,
            " 2 = 6 NeuronCores, more than the 2 of inf2.xlarge",
        )
    }

    #[test]
    fn plain_display_names_no_flag() {
        let e = example();
        assert_eq!(
            e.to_string(),
            "dp 3 × tp 2 = 6 NeuronCores, more than the 2 of inf2.xlarge"
        );
        assert!(!e.to_string().contains("--"));
        assert_eq!(e.settings(), vec![Setting::Dp, Setting::Tp]);
    }

    #[test]
    fn flag_rendering_names_the_flags() {
        assert_eq!(
            example().with_flags(),
            "--dp 3 × --tp 2 = 6 NeuronCores, more than the 2 of inf2.xlarge"
        );
        let e = SettingError::text("give ")
            .then(Setting::Requests, " N or ")
            .then(Setting::Duration, " D");
        assert_eq!(e.with_flags(), "give --requests N or --duration D");
        assert_eq!(e.to_string(), "give requests N or duration D");
    }

    #[test]
    fn a_chain_keeps_its_context_and_its_type() {
        let e = anyhow::Error::new(SettingError::new(Setting::SeqLen, " 4096 is too short"))
            .context("request 1");
        assert_eq!(format!("{e:#}"), "request 1: seq_len 4096 is too short");
        assert_eq!(
            render_chain(&e, &|s| s.flag().to_string()),
            "request 1: --seq-len 4096 is too short"
        );
        assert_eq!(chain_settings(&e), vec![Setting::SeqLen]);
        assert!(names_settings(&e));
        let kept = SettingError::from_chain(&e);
        assert_eq!(kept.to_string(), format!("{e:#}"));
        assert_eq!(kept.with_flags(), "request 1: --seq-len 4096 is too short");
        let plain: anyhow::Result<()> = Err(anyhow::anyhow!("no setting")).context("outer");
        let plain = plain.unwrap_err();
        assert!(!names_settings(&plain));
        assert_eq!(
            render_chain(&plain, &|s| s.flag().to_string()),
            "outer: no setting"
        );
    }
}
