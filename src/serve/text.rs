//! Token ids to streamed text: incremental detokenisation (the whole sequence is decoded
//! again and the new suffix sent, so byte-level pieces of one character are held until the
//! character is whole) and stop strings (text from a stop string on is never sent; while
//! the text's end could still begin one, that end is held back).

/// The text of one generation so far.
pub struct TextStream {
    ids: Vec<u32>,
    /// Decoded text of `ids` (up to a stop string, once one matched).
    text: String,
    /// Bytes of `text` already handed out.
    sent: usize,
    stops: Vec<String>,
    /// Tokens that made the text up to the end of the matched stop string.
    stopped_at: Option<usize>,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        TextStream {
            ids: Vec::new(),
            text: String::new(),
            sent: 0,
            stops,
            stopped_at: None,
        }
    }

    /// Adds a token; returns the text that may be sent now (possibly empty). After a stop
    /// string matched, nothing more is added.
    pub fn push(
        &mut self,
        id: u32,
        decode: &dyn Fn(&[u32]) -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        if self.stopped_at.is_some() {
            return Ok(String::new());
        }
        self.ids.push(id);
        let full = decode(&self.ids)?;
        // A trailing U+FFFD is an incomplete UTF-8 sequence: wait for its next bytes.
        if full.ends_with('\u{FFFD}') || !full.starts_with(&self.text[..self.sent]) {
            return Ok(String::new());
        }
        self.text = full;
        if let Some(at) = self.find_stop() {
            self.text.truncate(at);
            self.stopped_at = Some(self.ids.len());
        }
        Ok(self.take(self.holdback()))
    }

    /// Whatever is left to send at the end (held-back text that no stop string followed).
    pub fn flush(&mut self) -> String {
        self.take(0)
    }

    /// Tokens up to the end of the stop string that matched, if one did.
    pub fn stopped_at(&self) -> Option<usize> {
        self.stopped_at
    }

    /// Everything decoded so far (up to a stop string).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn find_stop(&self) -> Option<usize> {
        // A match may start a little before the unsent text: that far back suffices.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min()
    }

    /// Bytes at the end of the text that begin some stop string (they may yet complete it).
    fn holdback(&self) -> usize {
        if self.stopped_at.is_some() {
            return 0;
        }
        let t = self.text.as_bytes();
        self.stops
            .iter()
            .flat_map(|s| (1..s.len()).map(move |k| (s, k)))
            .filter(|(s, k)| t.len() >= *k && t[t.len() - k..] == s.as_bytes()[..*k])
            .map(|(_, k)| k)
            .max()
            .unwrap_or(0)
    }

    fn take(&mut self, hold: usize) -> String {
        let mut end = self.text.len().saturating_sub(hold).max(self.sent);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: id i decodes to `PIECES[i]` (bytes, so a character may split).
    const PIECES: &[&[u8]] = &[
        b"he", b"llo", b" wor", b"ld", b"\xc3", b"\xa9", b"!", b"END",
    ];

    fn decode(ids: &[u32]) -> anyhow::Result<String> {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|i| PIECES[*i as usize].to_vec())
            .collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn run(ids: &[u32], stops: &[&str]) -> (Vec<String>, String, Option<usize>) {
        let mut s = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut parts: Vec<String> = ids.iter().map(|i| s.push(*i, &decode).unwrap()).collect();
        parts.push(s.flush());
        let all = parts.concat();
        (parts, all, s.stopped_at())
    }

    #[test]
    fn split_characters_wait_for_their_bytes() {
        let (parts, all, stop) = run(&[0, 4, 5, 6], &[]);
        assert_eq!(all, "heé!");
        assert_eq!(parts[1], "");
        assert_eq!(parts[2], "é");
        assert_eq!(stop, None);
    }

    #[test]
    fn stop_strings_cut_the_text_and_are_never_sent() {
        // "hello world": the stop "o w" spans tokens 1 and 2; "llo" is held until then.
        let (parts, all, stop) = run(&[0, 1, 2, 3], &["o w"]);
        assert_eq!(all, "hell");
        assert_eq!(stop, Some(3));
        assert!(parts.iter().all(|p| !p.contains('o')));
        // A held-back prefix that does not complete is sent at the end.
        let (_, all, stop) = run(&[0, 1], &["lox"]);
        assert_eq!(all, "hello");
        assert_eq!(stop, None);
        // The earliest of several stops wins.
        let (_, all, _) = run(&[0, 1, 2, 3, 7], &["END", "ld"]);
        assert_eq!(all, "hello wor");
    }
}
