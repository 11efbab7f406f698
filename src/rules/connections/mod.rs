//! NN2xx: intermediate outputs and connections (section 3).

pub mod batch_mixing;
pub mod dead_relu;
pub mod gradient_scale;
pub mod hidden_softmax;
pub mod linear_stack;
pub mod non_finite;
pub mod zero_gradient;
