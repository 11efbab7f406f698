//! The names a model's inputs answer to on the command line.

/// The names `--input` and `--dim` may use for one model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputNames {
    /// The inputs the graph is fed (not initializers).
    pub inputs: Vec<String>,
    /// Named dynamic dimensions.
    pub dims: Vec<String>,
    /// `INPUT:AXIS` for every dynamic axis.
    pub axes: Vec<String>,
}

impl InputNames {
    /// The names of the main graph `graph`'s inputs.
    pub fn of(graph: &super::Graph<'_>) -> InputNames {
        use crate::onnx::proto::tensor_shape_proto::dimension::Value as D;
        use crate::onnx::proto::type_proto::Value as T;
        let fed: rustc_hash::FxHashSet<&str> = graph.fed_inputs().collect();
        let mut names = InputNames::default();
        for i in graph
            .model
            .graph()
            .input
            .iter()
            .filter(|i| fed.contains(i.name.as_str()))
        {
            names.inputs.push(i.name.clone());
            let Some(T::TensorType(t)) = i.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
                continue;
            };
            for (axis, d) in t.shape.iter().flat_map(|s| s.dim.iter()).enumerate() {
                match &d.value {
                    Some(D::DimValue(v)) if *v >= 0 => continue,
                    Some(D::DimParam(p)) if !p.is_empty() && !names.dims.contains(p) => {
                        names.dims.push(p.clone())
                    }
                    _ => {}
                }
                names.axes.push(format!("{}:{axis}", i.name));
            }
        }
        names
    }
}
