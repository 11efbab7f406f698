//! The probe's engine alone, for benches/probe.py: tract loads a model, types
//! it, optionally optimizes it, and runs it once on zeros of the declared
//! input shapes, with its matrix kernels on every core. No rules, no
//! lowering, no observation: the floor under `nnlint model.onnx`.
//!
//!     cargo run --release --example tract_baseline -- MODEL.onnx [optimized]

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::format_err;
use tract_onnx::tract_core::internal::SimplePlan;
use tract_onnx::tract_core::runtime::RunOptions;

/// The allocator nnlint itself uses, so that the floor is comparable.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| format_err!("usage: tract_baseline MODEL.onnx [optimized]"))?;
    let optimized = args.next().as_deref() == Some("optimized");
    let model = tract_onnx::onnx().model_for_path(&path)?.into_typed()?;
    let model = if optimized {
        model.into_optimized()?
    } else {
        model
    };
    let inputs: TVec<TValue> = model
        .input_outlets()?
        .iter()
        .map(|&o| {
            let fact = model.outlet_fact(o)?;
            let shape = fact
                .shape
                .as_concrete()
                .ok_or_else(|| format_err!("input shape {:?} is not concrete", fact.shape))?;
            Ok(Tensor::zero_dt(fact.datum_type, shape)?.into_tvalue())
        })
        .collect::<TractResult<_>>()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = RunOptions {
        executor: Some(tract_linalg::multithread::Executor::multithread(threads)),
        ..Default::default()
    };
    let plan = SimplePlan::new_with_options(model, &options)?;
    let out = plan.run(inputs)?;
    println!(
        "{:?}",
        out.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
    );
    Ok(())
}
