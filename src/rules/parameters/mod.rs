//! NN3xx: parameters, initialization and normalization (section 4).

pub mod batchnorm_batch_size_one;
pub mod bias_before_batchnorm;
pub mod constant_weights;
pub mod dropout_before_batchnorm;
pub mod dropout_rate;
pub mod init_scale;
pub mod layer_left_random;
pub mod missing_normalization;
pub mod unnormalized_input;
