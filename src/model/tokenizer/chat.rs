//! A model's Jinja chat template, rendered with minijinja the way Hugging Face transformers
//! renders it: `trim_blocks` and `lstrip_blocks` on, the special tokens as variables,
//! `raise_exception` and `strftime_now` as functions, and the Python string and dict methods
//! that templates commonly call (`strip`, `startswith`, `items`, ...).

use anyhow::{anyhow, Result};
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State};

/// A chat template and the special-token strings it may refer to.
#[derive(Debug, Clone)]
pub(super) struct ChatTemplate {
    source: String,
    /// `bos_token`, `eos_token`, ... as the template sees them; absent ones are left undefined.
    specials: Vec<(&'static str, String)>,
}

impl ChatTemplate {
    /// Keeps `source` unparsed: a template minijinja cannot read only fails when it is used.
    pub(super) fn new(source: String, specials: Vec<(&'static str, String)>) -> Self {
        ChatTemplate { source, specials }
    }

    /// The template's Jinja source.
    pub(super) fn source(&self) -> &str {
        &self.source
    }

    /// Renders one user message followed by the assistant's generation prompt.
    pub(super) fn render_user(&self, user_prompt: &str) -> Result<String> {
        self.render_messages(&[("user", user_prompt)])
    }

    /// Renders a conversation (`(role, content)` pairs, in order) followed by the
    /// assistant's generation prompt.
    pub(super) fn render_messages(&self, messages: &[(&str, &str)]) -> Result<String> {
        // `new` (with the built-in filters) is deprecated unless minijinja's `serde` feature
        // is on; it works the same either way.
        #[allow(deprecated)]
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.set_unknown_method_callback(python_method);
        let one_line = |e: Error| super::one_line(&e.to_string());
        let tpl = env
            .template_from_str(&self.source)
            .map_err(|e| anyhow!("the model's chat template does not parse: {}", one_line(e)))?;
        let mut ctx: Vec<(&str, Value)> = self
            .specials
            .iter()
            .map(|(k, v)| (*k, Value::from(v.as_str())))
            .collect();
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| Value::from_iter([("role", *role), ("content", *content)]))
            .collect();
        ctx.push(("messages", Value::from(messages)));
        ctx.push(("add_generation_prompt", Value::from(true)));
        tpl.render(Value::from_iter(ctx))
            .map_err(|e| anyhow!("cannot render the model's chat template: {}", one_line(e)))
    }
}

/// `raise_exception(msg)`: the template's own refusal, reported as the render error.
fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(fmt)`: the current UTC date and time; supports `%d %m %y %Y %b %B %H %M %S %%`.
fn strftime_now(fmt: String) -> Result<String, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_utc(&fmt, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Formats `secs` since the Unix epoch (UTC) with a small subset of C's `strftime`.
fn format_utc(fmt: &str, secs: u64) -> Result<String, Error> {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month_name = MONTHS[(month - 1) as usize];
        match it.next() {
            Some('d') => out += &format!("{day:02}"),
            Some('m') => out += &format!("{month:02}"),
            Some('Y') => out += &year.to_string(),
            Some('y') => out += &format!("{:02}", year.rem_euclid(100)),
            Some('b') => out += &month_name[..3],
            Some('B') => out += month_name,
            Some('H') => out += &format!("{:02}", rem / 3600),
            Some('M') => out += &format!("{:02}", rem / 60 % 60),
            Some('S') => out += &format!("{:02}", rem % 60),
            Some('%') => out.push('%'),
            other => {
                let what = other
                    .map(|c| format!("%{c}"))
                    .unwrap_or_else(|| "a lone %".into());
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: {what} is not supported (expected one of %d %m %y %Y %b %B %H %M %S %%)"),
                ));
            }
        }
    }
    Ok(out)
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The Python methods templates call on strings and dicts, which Jinja2 has and minijinja lacks.
fn python_method(_: &State, v: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    let str_arg = |i: usize| args.get(i).and_then(Value::as_str);
    if let Some(s) = v.as_str() {
        let strip_set = |i: usize| -> Vec<char> {
            str_arg(i).map_or_else(
                || vec![' ', '\t', '\n', '\r', '\x0b', '\x0c'],
                |c| c.chars().collect(),
            )
        };
        let out: Value = match name {
            "strip" => s.trim_matches(strip_set(0).as_slice()).into(),
            "lstrip" => s.trim_start_matches(strip_set(0).as_slice()).into(),
            "rstrip" => s.trim_end_matches(strip_set(0).as_slice()).into(),
            "lower" => s.to_lowercase().into(),
            "upper" => s.to_uppercase().into(),
            "startswith" => s
                .starts_with(str_arg(0).ok_or_else(|| bad_args(name))?)
                .into(),
            "endswith" => s
                .ends_with(str_arg(0).ok_or_else(|| bad_args(name))?)
                .into(),
            "replace" => match (str_arg(0), str_arg(1)) {
                (Some(from), Some(to)) => s.replace(from, to).into(),
                _ => return Err(bad_args(name)),
            },
            "split" => match str_arg(0) {
                Some(sep) if !sep.is_empty() => s.split(sep).map(Value::from).collect(),
                _ => s.split_whitespace().map(Value::from).collect(),
            },
            _ => return Err(unknown(name)),
        };
        return Ok(out);
    }
    if v.kind() == ValueKind::Map {
        let keys = || v.try_iter().map(|it| it.collect::<Vec<_>>());
        return match name {
            "keys" => Ok(Value::from(keys()?)),
            "values" => keys()?.iter().map(|k| v.get_item(k)).collect(),
            "items" => keys()?
                .into_iter()
                .map(|k| Ok(Value::from(vec![k.clone(), v.get_item(&k)?])))
                .collect(),
            "get" => {
                let key = args.first().ok_or_else(|| bad_args(name))?;
                let found = v.get_item(key)?;
                Ok(if found.is_undefined() {
                    args.get(1).cloned().unwrap_or(Value::from(()))
                } else {
                    found
                })
            }
            _ => Err(unknown(name)),
        };
    }
    Err(unknown(name))
}

fn unknown(name: &str) -> Error {
    Error::new(
        ErrorKind::UnknownMethod,
        format!("method {name}() is not supported here"),
    )
}

fn bad_args(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("{name}() got arguments of the wrong kind"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, prompt: &str) -> Result<String> {
        let specials = vec![
            ("bos_token", "<s>".to_string()),
            ("eos_token", "</s>".to_string()),
        ];
        ChatTemplate::new(src.to_string(), specials).render_user(prompt)
    }

    #[test]
    fn chatml_with_blocks_trimmed() {
        // Expected output is Jinja2's with trim_blocks and lstrip_blocks, as transformers sets them.
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n  {{ bos_token + m['role'] + ':' + m.content }}\n  {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}\n<bot>{% endif %}";
        assert_eq!(render(src, "hi").unwrap(), "  <s>user:hi\n<bot>");
    }

    #[test]
    fn python_methods_work() {
        let src = "{{ messages[0].content.strip().upper() }}|{% if messages[0].content.startswith(' a') %}yes{% endif %}|{% for k, v in messages[0].items() %}{{ k }}={{ v.rstrip() }};{% endfor %}|{{ messages[0].get('x', 'none') }}|{{ ' a b '.split() | length }}";
        assert_eq!(
            render(src, " ab ").unwrap(),
            "AB|yes|content= ab;role=user;|none|2"
        );
    }

    #[test]
    fn raise_exception_is_reported_on_one_line() {
        let e = render(
            "{{ raise_exception('only user and assistant roles') }}",
            "x",
        )
        .unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("only user and assistant roles") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn parse_errors_are_named() {
        let e = render("{% for %}", "x").unwrap_err().to_string();
        assert!(
            e.starts_with("the model's chat template does not parse"),
            "{e}"
        );
    }

    #[test]
    fn dates_format() {
        // 2024-07-23 13:05:09 UTC
        assert_eq!(
            format_utc("%d %b %Y %H:%M:%S %B %m %y %%", 1_721_739_909).unwrap(),
            "23 Jul 2024 13:05:09 July 07 24 %"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert!(format_utc("%Q", 0).is_err());
        assert!(render("{{ strftime_now('%d') | length }}", "x").unwrap() == "2");
    }
}
