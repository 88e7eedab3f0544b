//! The command line's names for the settings the library's messages name: the flag, or,
//! for a value read from a `--neuron-config` file, its key and the file it came from (an
//! error about `--seq-len` the user never typed must point at where the value was read).

use crate::projection::neuron_config::Applied;
use crate::projection::setting::{self, Setting, SettingError};

/// How settings are named: by flag, except those `file` set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Names<'a> {
    file: Option<&'a Applied>,
}

impl<'a> Names<'a> {
    /// Every setting by its flag.
    pub fn flags() -> Self {
        Names { file: None }
    }

    /// By flag, except the values `file` set (when one was read).
    pub fn with_file(file: Option<&'a Applied>) -> Self {
        Names { file }
    }

    /// The value `s` took from the file, as typed on a command line.
    fn file_value(&self, s: Setting) -> Option<String> {
        self.file.and_then(|a| a.file_value(s.key()))
    }

    /// `s` as the user gave it.
    pub fn name(&self, s: Setting) -> String {
        match self.file_value(s) {
            Some(_) => s.key().to_string(),
            None => s.flag().to_string(),
        }
    }

    /// " (seq_len 2048 read from FILE)" for the settings of `named` the file set; empty
    /// when it set none of them.
    fn source(&self, named: &[Setting]) -> String {
        let read: Vec<String> = named
            .iter()
            .filter_map(|&s| self.file_value(s).map(|v| format!("{} {v}", s.key())))
            .collect();
        match self.file {
            Some(a) if !read.is_empty() => format!(" ({} read from {})", read.join(", "), a.path),
            _ => String::new(),
        }
    }

    /// A reason the library gave, as the user reads it.
    pub fn reason(&self, r: &SettingError) -> String {
        r.render(&|s| self.name(s)) + &self.source(&r.settings())
    }

    /// `e`'s chain as one line of `{:#}`, its settings named as the user gave them.
    pub fn error_text(&self, e: &anyhow::Error) -> String {
        setting::render_chain(e, &|s| self.name(s)) + &self.source(&setting::chain_settings(e))
    }

    /// `e` as the user reads it: unchanged when it names no setting.
    pub fn error(&self, e: anyhow::Error) -> anyhow::Error {
        if setting::names_settings(&e) {
            anyhow::Error::msg(self.error_text(&e))
        } else {
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// What `--neuron-config` reports after setting `seq_len` and `buckets` (the flags set
    /// the rest).
    fn applied() -> Applied {
        Applied {
            path: "compiled/neuron_config.json".into(),
            format: "NxD Inference".into(),
            applied: BTreeMap::from([
                ("seq_len".to_string(), json!(2048)),
                ("buckets".to_string(), json!([512, 2048])),
            ]),
            overridden: BTreeMap::new(),
            not_applied: BTreeMap::new(),
            warnings: Vec::new(),
            not_held: Vec::new(),
        }
    }

    fn below() -> anyhow::Error {
        anyhow::Error::new(SettingError::new(
            Setting::SeqLen,
            " 2048 is below input + output = 2000 + 200 = 2200 tokens",
        ))
    }

    #[test]
    fn the_command_line_names_its_flags() {
        let e = below();
        assert_eq!(
            e.to_string(),
            "seq_len 2048 is below input + output = 2000 + 200 = 2200 tokens"
        );
        assert_eq!(
            Names::flags().error(e).to_string(),
            "--seq-len 2048 is below input + output = 2000 + 200 = 2200 tokens"
        );
        // Without a file, `with_file` names flags too; context stays in front.
        let e = below().context("request 2");
        assert_eq!(
            Names::with_file(None).error_text(&e),
            "request 2: --seq-len 2048 is below input + output = 2000 + 200 = 2200 tokens"
        );
    }

    #[test]
    fn a_value_from_the_file_is_named_with_the_file() {
        let a = applied();
        let names = Names::with_file(Some(&a));
        assert_eq!(
            names.error(below()).to_string(),
            "seq_len 2048 is below input + output = 2000 + 200 = 2200 tokens (seq_len 2048 read from compiled/neuron_config.json)"
        );
        // A setting the user gave keeps its flag; only the file's are listed.
        let e = SettingError::new(Setting::Buckets, ": bucket 4096 is above ")
            .then(Setting::SeqLen, " 2048 (")
            .then(Setting::Tp, " 16)");
        assert_eq!(
            names.reason(&e),
            "buckets: bucket 4096 is above seq_len 2048 (--tp 16) (buckets 512,2048, seq_len 2048 read from compiled/neuron_config.json)"
        );
        let mine = SettingError::new(Setting::Tp, " 16 is not allowed");
        assert_eq!(names.reason(&mine), "--tp 16 is not allowed");
    }

    #[test]
    fn an_error_naming_no_setting_is_left_as_it_is() {
        let e: anyhow::Error = anyhow::Error::new(crate::cli::Exit(130));
        let e = Names::flags().error(e);
        assert!(e.downcast_ref::<crate::cli::Exit>().is_some());
        let e: anyhow::Result<()> = Err(anyhow::anyhow!("inner")).context("outer");
        let e = Names::with_file(Some(&applied())).error(e.unwrap_err());
        assert_eq!(format!("{e:#}"), "outer: inner");
    }
}
