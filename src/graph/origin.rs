//! Where in the author's Python code a node was created.
//!
//! torch's dynamo exporter records a traceback on every node
//! (`pkg.torch.onnx.stack_trace`, outermost frame first) and the module it
//! came from (`namespace`). The TorchScript exporter, with `verbose=True`,
//! writes `path(line): function` lines into `doc_string`, innermost first.
//! Either way the user's frame is the innermost one outside torch, installed
//! packages and the standard library.

use super::NodeRef;

/// The Python line that created a node, as the exporter recorded it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PyOrigin {
    /// The path as recorded (absolute when the exporter wrote it so).
    pub file: String,
    pub line: usize,
    pub function: String,
    /// The module path, such as `features.3.conv.1`.
    pub module: Option<String>,
    /// The module's class, such as `torch.nn.modules.dropout.Dropout`.
    pub class: Option<String>,
    /// The line's source text as the exporter saw it (dynamo records it;
    /// TorchScript does not), for telling a file edited since export.
    pub text: Option<String>,
}

impl PyOrigin {
    /// `torch.nn.modules.linear.Linear` -> `torch.nn.Linear`, as users write it.
    pub fn short_class(&self) -> Option<String> {
        let c = self.class.as_deref()?;
        Some(match c.strip_prefix("torch.nn.modules.") {
            Some(rest) => format!("torch.nn.{}", rest.rsplit('.').next().unwrap_or(rest)),
            None => c.to_string(),
        })
    }
}

/// Whether a frame belongs to a library rather than to the author's code.
pub(super) fn is_library(path: &str) -> bool {
    let p = path.replace('\\', "/");
    p.starts_with('<')
        || p.contains("/site-packages/")
        || p.contains("/dist-packages/")
        || p.contains("/torch/")
        || p.contains("/lib/python3")
        || p.contains("/Lib/")
}

/// One recorded frame: file, line, function, and the line's text when recorded.
type Frame = (String, usize, String, Option<String>);

/// Frames of a dynamo `stack_trace`, outermost first: `File "p", line N, in f`,
/// each followed by the line's source text as Python's tracebacks print it.
fn dynamo_frames(trace: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    let mut expect_text = false;
    for l in trace.lines() {
        let header = l.trim_start().strip_prefix("File \"").and_then(|rest| {
            let (file, rest) = rest.split_once("\", line ")?;
            let (line, func) = rest.split_once(", in ").unwrap_or((rest, ""));
            Some((
                file.to_string(),
                line.trim().parse().ok()?,
                func.trim().to_string(),
            ))
        });
        match header {
            Some((file, line, func)) => {
                frames.push((file, line, func, None));
                expect_text = true;
            }
            None if expect_text => {
                let text = l.trim();
                if let Some(last) = frames.last_mut().filter(|_| !text.is_empty()) {
                    last.3 = Some(text.to_string());
                }
                expect_text = false;
            }
            None => {}
        }
    }
    frames
}

/// Frames of a TorchScript `doc_string`, innermost first: `p(N): f`.
fn torchscript_frames(doc: &str) -> Vec<Frame> {
    doc.lines()
        .filter_map(|l| {
            let (loc, func) = l.rsplit_once("): ")?;
            let (file, line) = loc.rsplit_once('(')?;
            Some((
                file.to_string(),
                line.parse().ok()?,
                func.trim().to_string(),
                None,
            ))
        })
        .collect()
}

/// The module segment of a dynamo `namespace`, such as
/// `": __main__.Net/fc1: torch.nn.modules.linear.Linear/linear: aten.linear.default"`:
/// the last `name: class` pair that is a module, not the aten op.
fn namespace_module(ns: &str) -> Option<(String, String)> {
    let segments: Vec<(&str, &str)> = ns
        .split('/')
        .filter_map(|s| s.split_once(": "))
        .map(|(n, c)| (n.trim(), c.trim()))
        .collect();
    segments
        .iter()
        .rev()
        .find(|(name, class)| {
            !name.is_empty() && !class.starts_with("aten.") && !class.starts_with("prims.")
        })
        .map(|(n, c)| (n.to_string(), c.to_string()))
}

impl NodeRef<'_, '_> {
    /// The Python line that created this node, when the exporter recorded one.
    pub fn python_origin(&self) -> Option<PyOrigin> {
        let (file, line, function, text) =
            if let Some(trace) = self.metadata("pkg.torch.onnx.stack_trace") {
                dynamo_frames(trace)
                    .into_iter()
                    .rev()
                    .find(|f| !is_library(&f.0))?
            } else {
                torchscript_frames(self.doc_string())
                    .into_iter()
                    .find(|f| !is_library(&f.0))?
            };
        let (module, class) = match self.metadata("namespace").and_then(namespace_module) {
            Some((m, c)) => (Some(m), Some(c)),
            // TorchScript names nodes after the module path: `/features/features.0/Conv`.
            None => {
                let parts: Vec<&str> = self.name().split('/').filter(|s| !s.is_empty()).collect();
                let module = (parts.len() >= 2).then(|| parts[parts.len() - 2].to_string());
                (module, None)
            }
        };
        Some(PyOrigin {
            file,
            line,
            function,
            module,
            class,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamo_trace_gives_the_innermost_user_frame() {
        let trace = "File \"/abs/train.py\", line 90, in main\n    out = model(x)\n  File \"/abs/model.py\", line 42, in forward\n    x = self.drop(x)\n  File \"/venv/lib/python3.11/site-packages/torch/nn/modules/dropout.py\", line 70, in forward\n    return F.dropout(x)";
        let user = dynamo_frames(trace)
            .into_iter()
            .rev()
            .find(|f| !is_library(&f.0));
        assert_eq!(
            user,
            Some((
                "/abs/model.py".into(),
                42,
                "forward".into(),
                Some("x = self.drop(x)".into())
            ))
        );
    }

    #[test]
    fn torchscript_doc_string_is_read_from_the_innermost_end() {
        let doc = "/venv/lib/python3.11/site-packages/torch/nn/functional.py(1497): dropout\n/venv/lib/python3.11/site-packages/torch/nn/modules/dropout.py(73): forward\n/abs/model.py(45): forward\n/venv/lib/python3.11/site-packages/torch/jit/_trace.py(131): wrapper\n/abs/export.py(12): <module>";
        let user = torchscript_frames(doc)
            .into_iter()
            .find(|f| !is_library(&f.0));
        assert_eq!(
            user,
            Some(("/abs/model.py".into(), 45, "forward".into(), None))
        );
    }

    #[test]
    fn namespace_names_the_module_not_the_op() {
        let ns = ": __main__.Net/features: torch.nn.modules.container.Sequential/features.3: torchvision.ops.misc.Conv2dNormActivation/features.3.1: torch.nn.modules.batchnorm.BatchNorm2d/_native_batch_norm_legit_no_training: aten._native_batch_norm_legit_no_training.default";
        assert_eq!(
            namespace_module(ns),
            Some((
                "features.3.1".into(),
                "torch.nn.modules.batchnorm.BatchNorm2d".into()
            ))
        );
        let o = PyOrigin {
            file: String::new(),
            line: 1,
            function: String::new(),
            module: None,
            class: Some("torch.nn.modules.dropout.Dropout".into()),
            text: None,
        };
        assert_eq!(o.short_class().as_deref(), Some("torch.nn.Dropout"));
    }
}
