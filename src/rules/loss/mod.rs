//! NN1xx: the loss and the layers in front of it (the checklist's section 2).

pub mod bce_without_sigmoid;
pub mod binary_loss_on_softmax;
pub mod double_sigmoid;
pub mod double_softmax;
pub mod kl_div_on_probabilities;
pub mod log_of_unbounded;
pub mod log_softmax_by_hand;
pub mod loss_broadcast;
pub mod multi_loss_scale;
pub mod nll_without_log;
pub mod regression_loss_on_probabilities;
pub mod relu_on_logits;
pub mod softmax_batch_axis;
pub mod softmax_single_class;
