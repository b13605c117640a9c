//! Stop sequences matched on the decoded text, across token boundaries. Text that could be
//! the start of a stop sequence is held back until it is decided, so a stream never shows
//! part of a stop sequence.

/// What a push released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// No stop sequence yet; this text is final and may be sent.
    Continue(String),
    /// A stop sequence was found; this is the text before it, and generation ends.
    Stopped(String),
}

/// Watches generated text for any of up to a few stop sequences.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        self.pending.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(pos) = first {
            let before = self.pending[..pos].to_string();
            self.pending.clear();
            return StopOutcome::Stopped(before);
        }
        let hold = self.held_suffix_len();
        let release = self.pending.len() - hold;
        let out = self.pending[..release].to_string();
        self.pending.drain(..release);
        StopOutcome::Continue(out)
    }

    /// Releases the text held back (generation ended without a stop sequence).
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop sequence.
    fn held_suffix_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for (cut, _) in stop.char_indices().skip(1) {
                let prefix = &stop[..cut];
                if cut > best && self.pending.ends_with(prefix) {
                    best = cut;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn stop_split_across_pushes_is_caught_and_removed() {
        let mut m = StopMatcher::new(&stops(&["END"]));
        assert_eq!(m.push("hello E"), StopOutcome::Continue("hello ".into()));
        assert_eq!(m.push("N"), StopOutcome::Continue(String::new()));
        assert_eq!(m.push("D and more"), StopOutcome::Stopped(String::new()));
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(&stops(&["END"]));
        assert_eq!(m.push("EN"), StopOutcome::Continue(String::new()));
        assert_eq!(m.push("x"), StopOutcome::Continue("ENx".into()));
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn earliest_of_several_wins_and_text_before_is_kept() {
        let mut m = StopMatcher::new(&stops(&["\n\n", "b"]));
        assert_eq!(m.push("a\n\nb"), StopOutcome::Stopped("a".into()));
        let mut m = StopMatcher::new(&stops(&["xyz", "y"]));
        assert_eq!(m.push("wxy"), StopOutcome::Stopped("wx".into()));
    }

    #[test]
    fn held_text_is_flushed_at_the_end() {
        let mut m = StopMatcher::new(&stops(&["stop here"]));
        assert_eq!(m.push("we stop"), StopOutcome::Continue("we ".into()));
        assert_eq!(m.flush(), "stop");
    }

    #[test]
    fn multibyte_stops_hold_on_char_boundaries() {
        let mut m = StopMatcher::new(&stops(&["日本"]));
        assert_eq!(m.push("東京日"), StopOutcome::Continue("東京".into()));
        assert_eq!(m.push("本"), StopOutcome::Stopped(String::new()));
    }

    #[test]
    fn no_stops_release_everything() {
        let mut m = StopMatcher::new(&stops(&["", ""]));
        assert_eq!(m.push("abc"), StopOutcome::Continue("abc".into()));
    }
}
