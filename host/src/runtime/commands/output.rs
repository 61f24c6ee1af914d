//! A command's output on its way to the caller: secrets masked, capped at
//! the executor's `max_output` with a notice saying how much was dropped.

use crate::runtime::secrets::Masker;

pub struct OutputCollector {
    kept: Vec<u8>,
    cap: usize,
    dropped: u64,
    masker: Masker,
}

impl OutputCollector {
    pub fn new(cap: usize, secrets: &[String]) -> Self {
        Self { kept: Vec::new(), cap, dropped: 0, masker: Masker::new(secrets) }
    }

    /// Takes a chunk from the executor; passes on what fits.
    pub fn push(&mut self, chunk: &[u8], on_output: &mut (dyn FnMut(&[u8]) + Send)) {
        if self.masker.is_noop() {
            self.keep(chunk, on_output);
        } else {
            let masked = self.masker.feed(chunk);
            self.keep(&masked, on_output);
        }
    }

    fn keep(&mut self, chunk: &[u8], on_output: &mut (dyn FnMut(&[u8]) + Send)) {
        let room = self.cap.saturating_sub(self.kept.len());
        let take = room.min(chunk.len());
        if take > 0 {
            self.kept.extend_from_slice(&chunk[..take]);
            on_output(&chunk[..take]);
        }
        self.dropped += (chunk.len() - take) as u64;
    }

    /// The whole kept output, with the truncation notice if any.
    pub fn finish(mut self, on_output: &mut (dyn FnMut(&[u8]) + Send)) -> String {
        let tail = self.masker.finish();
        self.keep(&tail, on_output);
        if self.dropped > 0 {
            let notice = format!(
                "\n[output truncated: kept the first {} bytes (max_output), dropped {} more]\n",
                self.cap, self.dropped
            );
            self.kept.extend_from_slice(notice.as_bytes());
            on_output(notice.as_bytes());
        }
        match String::from_utf8(self.kept) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_output_with_a_notice_and_masks_secrets() {
        let mut streamed = Vec::new();
        let mut sink = |c: &[u8]| streamed.extend_from_slice(c);
        let mut c = OutputCollector::new(10, &["s3cr3t".to_string()]);
        c.push(b"a s3c", &mut sink);
        c.push(b"r3t b c d e f", &mut sink);
        let out = c.finish(&mut sink);
        assert!(out.starts_with("a ********"), "{out}");
        assert!(out.contains("[output truncated: kept the first 10 bytes (max_output), dropped 10 more]"), "{out}");
        assert_eq!(String::from_utf8(streamed).unwrap(), out);
    }
}
