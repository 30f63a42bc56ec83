//! [`Writer`]: writes a packed value, value by value, in depth-first order.

use crate::tag;

/// Writes a packed value, value by value, in depth-first order.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

/// Where a container's count goes, to be filled in by [`Writer::finish_container`].
#[derive(Debug, Clone, Copy)]
pub struct Slot(usize);

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::with_capacity(128)
    }

    /// An empty writer with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// `null`.
    pub fn null(&mut self) {
        self.buf.push(tag::NULL);
    }

    /// A boolean.
    pub fn bool(&mut self, b: bool) {
        self.buf.push(if b { tag::TRUE } else { tag::FALSE });
    }

    /// An integer.
    pub fn int(&mut self, i: i64) {
        self.buf.push(tag::INT);
        self.buf.extend_from_slice(&i.to_le_bytes());
    }

    /// A finite float (the caller refuses NaN and infinities).
    pub fn float(&mut self, f: f64) {
        self.buf.push(tag::FLOAT);
        self.buf.extend_from_slice(&f.to_le_bytes());
    }

    /// A string.
    pub fn str(&mut self, s: &str) {
        self.buf.push(tag::STR);
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// An object key; its value follows.
    pub fn key(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Starts an array of items that follow; finish it with its count.
    pub fn begin_array(&mut self) -> Slot {
        self.begin(tag::ARRAY)
    }

    /// Starts an object of `key` + value pairs that follow; finish it with its count.
    pub fn begin_object(&mut self) -> Slot {
        self.begin(tag::OBJECT)
    }

    fn begin(&mut self, tag: u8) -> Slot {
        self.buf.push(tag);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        Slot(at)
    }

    /// Writes the count of the container started at `slot`.
    pub fn finish_container(&mut self, slot: Slot, count: usize) {
        let n = u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes();
        self.buf[slot.0..slot.0 + 4].copy_from_slice(&n);
    }

    /// Where the writer is, to [`Writer::truncate`] back to.
    pub fn position(&self) -> usize {
        self.buf.len()
    }

    /// Forgets everything written after `position`.
    pub fn truncate(&mut self, position: usize) {
        self.buf.truncate(position);
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The finished bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Forgets everything written, keeping the allocation for the next value.
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    fn len(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&n.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reader;
    use serde_json::json;

    #[test]
    fn a_writer_can_back_out_of_a_container() {
        let mut w = Writer::new();
        let outer = w.begin_object();
        w.key("k");
        let at = w.position();
        let arr = w.begin_array();
        w.int(1);
        w.finish_container(arr, 1);
        // Changed our mind: write an object instead.
        w.truncate(at);
        let obj = w.begin_object();
        w.key("1");
        w.int(1);
        w.finish_container(obj, 1);
        w.finish_container(outer, 1);
        assert_eq!(Reader::new(w.as_bytes()).value(), json!({"k": {"1": 1}}));
    }
}
