//! The request-head size guard's scanner: where a head ends, and whether its request line or
//! its headers are over the limits.

use super::MAX_HEADERS;

/// Which limit an oversized request head broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Oversized {
    /// The request line alone is over the limit.
    Uri,
    /// The headers are.
    Head,
}

/// Finds where a request head ends, counting its bytes and lines.
#[derive(Default)]
pub(super) struct HeadScan {
    pub(super) generation: u64,
    started: bool,
    bytes: usize,
    lines: usize,
    at_line_start: bool,
    pub(super) complete: bool,
}

impl HeadScan {
    /// A fresh scan, for the head that follows the connection's `generation`-th answer.
    pub(super) fn after(generation: u64) -> HeadScan {
        HeadScan {
            generation,
            ..HeadScan::default()
        }
    }

    /// Feeds bytes read; `Err` once the head is over the limits.
    pub(super) fn feed(&mut self, bytes: &[u8], max_bytes: usize) -> Result<(), Oversized> {
        for &b in bytes {
            if self.complete {
                return Ok(());
            }
            if !self.started {
                // Empty lines before a request line are ignored (RFC 9112, 2.2).
                if b == b'\r' || b == b'\n' {
                    continue;
                }
                self.started = true;
            }
            self.bytes += 1;
            match b {
                b'\n' if self.at_line_start => self.complete = true,
                b'\n' => {
                    self.lines += 1;
                    self.at_line_start = true;
                }
                b'\r' => {}
                _ => self.at_line_start = false,
            }
            if self.bytes > max_bytes || self.lines > MAX_HEADERS + 1 {
                return Err(if self.lines == 0 {
                    Oversized::Uri
                } else {
                    Oversized::Head
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_empty_line() {
        let mut scan = HeadScan::default();
        assert_eq!(scan.feed(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n", 100), Ok(()));
        assert!(!scan.complete);
        assert_eq!(scan.feed(b"\r\nbody bytes that do not count", 100), Ok(()));
        assert!(scan.complete);
        let mut bare = HeadScan::default();
        assert_eq!(bare.feed(b"GET / HTTP/1.1\nHost: a\n\n", 100), Ok(()));
        assert!(bare.complete);
    }

    #[test]
    fn long_request_lines_and_heads_are_told_apart() {
        let mut uri = HeadScan::default();
        assert_eq!(uri.feed(&[b'a'; 101], 100), Err(Oversized::Uri));
        let mut head = HeadScan::default();
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        bytes.extend_from_slice(&[b'h'; 100]);
        assert_eq!(head.feed(&bytes, 100), Err(Oversized::Head));
        let mut many = HeadScan::default();
        let lines = "x: y\r\n".repeat(MAX_HEADERS + 1);
        assert_eq!(
            many.feed(format!("GET / HTTP/1.1\r\n{lines}").as_bytes(), 1 << 20),
            Err(Oversized::Head)
        );
        let mut enough = HeadScan::default();
        let lines = "x: y\r\n".repeat(MAX_HEADERS);
        assert_eq!(
            enough.feed(format!("GET / HTTP/1.1\r\n{lines}\r\n").as_bytes(), 1 << 20),
            Ok(())
        );
        assert!(enough.complete);
    }
}
