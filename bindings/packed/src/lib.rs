//! plughost-packed: the packed payload format, the one definition shared by
//! the host (`plughost-bindings`) and native plugins (`plughost-sdk`).
//!
//! A packed value is a JSON value written depth-first into one byte buffer:
//! a tag byte per value, little-endian numbers, `u32` lengths and counts.
//! Writing one costs one growing buffer instead of an allocation per key
//! and string, and a reader walks it without building a JSON tree.
//!
//! | tag | value | followed by |
//! | ---: | --- | --- |
//! | 0 | `null` | nothing |
//! | 1, 2 | `false`, `true` | nothing |
//! | 3 | an integer | 8 bytes, `i64` little-endian |
//! | 4 | a float (finite) | 8 bytes, `f64` little-endian |
//! | 5 | a string | `u32` byte length, the UTF-8 bytes |
//! | 6 | an array | `u32` item count, the items |
//! | 7 | an object | `u32` pair count, then per pair: `u32` key length, the key's UTF-8 bytes, the value |
//!
//! A buffer holds exactly one value. Bytes from elsewhere (another library,
//! another process) are checked with [`validate`] before they are trusted;
//! a [`Reader`] never panics on any bytes, but reads garbage as garbage.
//!
//! # Layout
//!
//! - [`Writer`] and [`Reader`]/[`Token`]: the format, value by value.
//! - [`validate`]: the check of untrusted bytes ([`PackedError`]).
//! - [`PayloadRef`]: a borrowed view for reading a field or two.
//! - [`from_slice`] and [`to_vec`]: serde, into and out of the plugin's own types.
//! - [`pack_value`]/[`unpack_value`]: to and from `serde_json::Value`, for convenience.
#![deny(missing_docs)]

mod de;
mod error;
mod reader;
mod ser;
mod validate;
mod value;
mod view;
mod writer;

pub use de::{Deserializer, from_slice};
pub use error::Error;
pub use reader::{Reader, Token};
pub use ser::{Serializer, to_vec, to_writer};
pub use validate::{MAX_DEPTH, PackedError, validate};
pub use value::{pack_value, unpack_value, write_value};
pub use view::{Entries, Items, PayloadRef};
pub use writer::{Slot, Writer};

/// The tag bytes.
pub(crate) mod tag {
    pub const NULL: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const STR: u8 = 5;
    pub const ARRAY: u8 = 6;
    pub const OBJECT: u8 = 7;
}
