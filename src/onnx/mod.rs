//! Reading models: the prost messages, the memory-mapped loader with its
//! external-data checks, tensor values, and the text listing.

pub mod external;
pub mod load;
pub mod printer;
pub mod proto;
pub mod source;
pub mod text;
pub mod values;
mod wire;

pub use load::{load, LoadError, Model};
pub use values::ValueError;
