//! Reading models: the prost messages, the memory-mapped loader with its
//! external-data checks, tensor values, and the text listing.

pub mod external;
pub mod load;
pub mod printer;
pub mod proto;
#[cfg(unix)]
mod sigbus;
pub mod source;
pub mod text;
pub mod values;
mod wire;

pub use load::{load, load_partial, LoadError, Model};
pub use values::ValueError;
