//! The loss, found from what the graph computes.
//!
//! Exporters write a loss as a loss op (`SoftmaxCrossEntropyLoss`,
//! `NegativeLogLikelihoodLoss`) only when the author called the library's
//! function and the exporter had an op for it. Everything else is plain
//! arithmetic: torch decomposes `F.binary_cross_entropy`, `F.kl_div`,
//! `F.mse_loss` and `F.l1_loss`; tf2onnx and hand-written losses spell the
//! cross-entropy as `-(y * log(softmax(z))).sum(1).mean()`. One place reads
//! them all: [`Graph::loss`] splits each scalar output into its weighted
//! terms and names what each term computes, what it scores and against
//! which target. Every loss rule, the probe's labels and the measurements of
//! the initial loss and of the terms' scales read it from there.
//!
//! Cost: one pass over the nodes in each direction marks what the weights
//! compute and which inputs feed them; each term is then read within a
//! fixed number of nodes ([`REGION`]).

use super::{Graph, NodeId, NodeRef, TensorId};

/// Nodes read below a term's reduction, at most.
const REGION: usize = 64;
/// Weight, sign and layout ops walked through from a scalar output to its terms.
const SPLIT_DEPTH: usize = 64;
/// Tensors visited while splitting one scalar output, at most.
const SPLIT_VISITS: usize = 512;

/// What a loss term computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Form {
    /// `SoftmaxCrossEntropyLoss`.
    CrossEntropy,
    /// `NegativeLogLikelihoodLoss`.
    NegativeLogLikelihood,
    /// A cross-entropy written out: `y * log(softmax(z))` summed, or a
    /// gather of `log_softmax(z)` at the labels.
    CrossEntropyWritten,
    /// Binary cross-entropy: torch's decomposition, with or without logits,
    /// or `t log p + (1 - t) log(1 - p)` written out.
    BinaryCrossEntropy,
    /// A cross-entropy over a similarity matrix of two embeddings (CLIP).
    Contrastive,
    /// A cross-entropy reweighted by `(1 - p)^gamma`.
    Focal,
    /// `t * (log t - x)`: what `F.kl_div` computes.
    KlDivergence,
    /// A mean or sum of squared differences (MSE).
    Squared,
    /// ... of absolute differences (L1).
    Absolute,
    /// Squared near zero, absolute beyond (Huber, smooth L1).
    Huber,
    /// A squared difference against noise the model's input was corrupted
    /// with: a diffusion model's noise prediction.
    NoisePrediction,
    /// It reads the graph's inputs only through the model: two of its
    /// outputs compared (distillation, consistency), or a penalty on
    /// activations.
    SelfComparison,
    /// It reads no graph input: a penalty on the weights.
    Penalty,
    /// A reduction of something else the model computes against a target.
    Other,
}

impl Form {
    /// The words for the form, in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Form::CrossEntropy => "cross-entropy",
            Form::NegativeLogLikelihood => "negative log-likelihood",
            Form::CrossEntropyWritten => "cross-entropy written out",
            Form::BinaryCrossEntropy => "binary cross-entropy",
            Form::Contrastive => "contrastive cross-entropy over a similarity matrix",
            Form::Focal => "focal loss",
            Form::KlDivergence => "KL divergence",
            Form::Squared => "squared error",
            Form::Absolute => "absolute error",
            Form::Huber => "Huber loss",
            Form::NoisePrediction => "noise-prediction squared error",
            Form::SelfComparison => "term on the model's own outputs",
            Form::Penalty => "penalty on the weights",
            Form::Other => "reduction",
        }
    }

    /// A loss against labels or targets: what makes a graph have a loss.
    pub fn is_data(self) -> bool {
        !matches!(self, Form::SelfComparison | Form::Penalty | Form::Other)
    }

    /// A loss over classes, whose value at initialization is about -ln(1/C).
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            Form::CrossEntropy
                | Form::NegativeLogLikelihood
                | Form::CrossEntropyWritten
                | Form::BinaryCrossEntropy
                | Form::Contrastive
        )
    }
}

/// How a term reduces its elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reduction {
    Mean,
    Sum,
    /// A sum divided by the batch size (`F.kl_div(..., reduction='batchmean')`).
    BatchMean,
    None,
}

impl Reduction {
    /// Its name, as the json report spells it.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::BatchMean => "batch-mean",
            Reduction::None => "none",
        }
    }
}

/// One term of a loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    pub form: Form,
    /// The node that reduces it: the loss op, or the outermost reduction.
    pub node: NodeId,
    /// Its value before its weight: a scalar, unless the reduction is none.
    pub value: TensorId,
    /// The constant it enters the total with, signed (`-(...)` is -1).
    pub weight: f64,
    /// The `Mul` or `Div` that applies the weight, if any.
    pub scaled_by: Option<NodeId>,
    /// What the model predicts: the logits a softmax or sigmoid reads, or
    /// the probabilities or values compared with the target.
    pub scores: Option<TensorId>,
    /// The graph input with the labels or targets.
    pub target: Option<TensorId>,
    /// The elementwise node where the prediction meets the target.
    pub meet: Option<NodeId>,
    /// The `Log` nodes the term takes.
    pub logs: Vec<NodeId>,
    pub reduction: Reduction,
    /// Whether the scores are logits a sigmoid or softmax inside the term reads.
    pub logits: bool,
}

impl Term {
    /// Its value as a positive loss, from the value of [`Term::value`]: a
    /// term the total subtracts (`-(y * log p).sum()`) is negated back.
    pub fn signed(&self, value: f64) -> f64 {
        if self.weight < 0.0 {
            -value
        } else {
            value
        }
    }
}

/// The loss of a graph: its terms, and the output that sums them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loss {
    /// The scalar output the terms add up to, when the graph returns one.
    pub total: Option<TensorId>,
    pub terms: Vec<Term>,
}

impl Loss {
    /// Whether the graph has a loss: a term against labels or targets.
    pub fn found(&self) -> bool {
        self.terms.iter().any(|t| t.form.is_data())
    }

    /// The terms against labels or targets.
    pub fn data_terms(&self) -> impl Iterator<Item = &Term> {
        self.terms.iter().filter(|t| t.form.is_data())
    }
}

/// Per tensor, what the loss analysis needs to know.
#[derive(Default)]
pub(crate) struct Flow {
    /// Computed from a weight layer's output.
    behind: Vec<bool>,
    /// Read by a weight layer, directly or through other nodes.
    feeds: Vec<bool>,
    /// A graph input a caller feeds.
    input: Vec<bool>,
}

impl<'m> Graph<'m> {
    /// The graph's loss, found once.
    pub fn loss(&self) -> &Loss {
        self.loss.get_or_init(|| self.find_loss())
    }

    /// Whether tensor `t` is computed from a weight layer's output.
    pub fn is_behind_weights(&self, t: TensorId) -> bool {
        self.flow().behind.get(t).copied().unwrap_or(false)
    }

    /// Whether tensor `t` reaches a weight layer.
    pub fn feeds_weights(&self, t: TensorId) -> bool {
        self.flow().feeds.get(t).copied().unwrap_or(false)
    }

    /// A graph input no weight layer reads: labels or targets.
    pub fn is_target_input(&self, t: TensorId) -> bool {
        let f = self.flow();
        f.input.get(t).copied().unwrap_or(false) && !f.feeds.get(t).copied().unwrap_or(false)
    }

    fn flow(&self) -> &Flow {
        self.flow.get_or_init(|| self.compute_flow())
    }

    fn compute_flow(&self) -> Flow {
        let n = self.tensors.len();
        let mut f = Flow {
            behind: vec![false; n],
            feeds: vec![false; n],
            input: vec![false; n],
        };
        for name in self.fed_inputs() {
            if let Some(t) = self.tensor_id(name) {
                f.input[t] = true;
            }
        }
        let Some(order) = self.topological_order() else {
            return f;
        };
        // A shape is not a value the weights compute, nor one they read.
        let shape_only = |n: &NodeRef<'_, 'm>| matches!(n.op_type(), "Shape" | "Size");
        for &id in order {
            let node = self.node(id);
            if shape_only(&node) {
                continue;
            }
            let behind = self.weight_layer(id).is_some()
                || (0..node.inputs().len())
                    .filter_map(|i| node.input_id(i))
                    .any(|t| f.behind[t]);
            if behind {
                for o in (0..node.outputs().len()).filter_map(|i| node.output_id(i)) {
                    f.behind[o] = true;
                }
            }
        }
        for &id in order.iter().rev() {
            let node = self.node(id);
            if shape_only(&node) {
                continue;
            }
            let feeds = self.weight_layer(id).is_some()
                || (0..node.outputs().len())
                    .filter_map(|i| node.output_id(i))
                    .any(|t| f.feeds[t]);
            if feeds {
                for i in (0..node.inputs().len()).filter_map(|i| node.input_id(i)) {
                    f.feeds[i] = true;
                }
            }
        }
        f
    }

    fn find_loss(&self) -> Loss {
        let mut loss = Loss::default();
        // The scalar outputs, split into their terms.
        for &o in &self.outputs {
            let Some(t) = self.tensor_id(o) else {
                continue;
            };
            if !self.is_scalar_float(t) {
                continue;
            }
            let mut terms = Vec::new();
            self.split(t, 1.0, None, &mut terms, &mut Default::default(), 0);
            if terms.iter().any(|t| t.form.is_data()) {
                loss.total.get_or_insert(t);
                for term in terms {
                    if !loss.terms.iter().any(|u| u.node == term.node) {
                        loss.terms.push(term);
                    }
                }
            }
        }
        // Loss ops no scalar output sums (`reduction='none'`, or an output
        // of another shape), each a term of its own.
        for n in self.nodes() {
            if !n.domain_is_default()
                || !(n.is("SoftmaxCrossEntropyLoss") || n.is("NegativeLogLikelihoodLoss"))
                || loss.terms.iter().any(|t| t.node == n.id())
            {
                continue;
            }
            // A loss op inside another term (a focal loss's per-sample
            // cross-entropy) is that term's.
            if loss.terms.iter().any(|t| t.meet == Some(n.id())) {
                continue;
            }
            if let Some(term) = n.output_id(0).and_then(|o| self.term(o, 1.0, None)) {
                loss.terms.push(term);
            }
        }
        loss
    }

    fn is_scalar_float(&self, t: TensorId) -> bool {
        let float = self
            .elem_type(self.tensor_name(t))
            .is_none_or(crate::onnx::proto::data_type::is_float);
        // A shape nobody declared may be a scalar: the split decides.
        let scalar = self
            .shape_of(t)
            .is_none_or(|s| s.iter().all(|d| matches!(d, super::Dim::Known(1))));
        float && scalar
    }

    /// Splits a sum into terms through additions, subtractions, negations,
    /// constant weights and layout ops.
    fn split(
        &self,
        t: TensorId,
        weight: f64,
        scaled_by: Option<NodeId>,
        out: &mut Vec<Term>,
        seen: &mut rustc_hash::FxHashSet<TensorId>,
        depth: usize,
    ) {
        // Each tensor once: a sum that reuses a value (`x + x`, a diamond)
        // must not be walked once per path.
        if !seen.insert(t) || seen.len() > SPLIT_VISITS {
            return;
        }
        let term = |out: &mut Vec<Term>| {
            if let Some(term) = self.term(t, weight, scaled_by) {
                out.push(term);
            }
        };
        if depth > SPLIT_DEPTH {
            return term(out);
        }
        let Some((p, _)) = self.producer_of(t) else {
            return;
        };
        let operands: Vec<Option<TensorId>> =
            (0..p.inputs().len()).map(|i| p.input_id(i)).collect();
        let computed = |i: usize| {
            operands
                .get(i)
                .copied()
                .flatten()
                .filter(|&x| self.constant_through_of(x).is_none())
        };
        let scalar = |i: usize| {
            operands
                .get(i)
                .copied()
                .flatten()
                .and_then(|x| self.scalar(self.tensor_name(x)))
        };
        match p.op_type() {
            "Add" | "Sub" if p.domain_is_default() => {
                let sign = if p.is("Sub") { -1.0 } else { 1.0 };
                match (computed(0), computed(1)) {
                    (Some(a), Some(b)) => {
                        self.split(a, weight, scaled_by, out, seen, depth + 1);
                        self.split(b, sign * weight, scaled_by, out, seen, depth + 1);
                    }
                    // A constant beside a term: a penalty the exporter folded.
                    (Some(a), None) => self.split(a, weight, scaled_by, out, seen, depth + 1),
                    (None, Some(b)) => {
                        self.split(b, sign * weight, scaled_by, out, seen, depth + 1)
                    }
                    (None, None) => {}
                }
            }
            // `div_no_nan` (tf2onnx): `where(count == 0, 0, sum / count)`.
            "Where" => match (computed(1), computed(2)) {
                (Some(a), None) | (None, Some(a)) => {
                    self.split(a, weight, scaled_by, out, seen, depth + 1)
                }
                _ => term(out),
            },
            "Neg" => match computed(0) {
                Some(a) => self.split(a, -weight, scaled_by, out, seen, depth + 1),
                None => term(out),
            },
            "Mul" | "Div" => {
                let w = match (computed(0), computed(1)) {
                    (Some(a), None) => scalar(1).map(|w| (a, w)),
                    (None, Some(b)) if p.is("Mul") => scalar(0).map(|w| (b, w)),
                    _ => None,
                };
                match w {
                    Some((a, w)) if p.is("Mul") => {
                        self.split(a, weight * w, Some(p.id()), out, seen, depth + 1)
                    }
                    Some((a, w)) if w != 0.0 => {
                        self.split(a, weight / w, Some(p.id()), out, seen, depth + 1)
                    }
                    _ => term(out),
                }
            }
            _ if self.is_value_preserving(&p) => match p.input_id(0) {
                Some(a) => self.split(a, weight, scaled_by, out, seen, depth + 1),
                None => term(out),
            },
            _ => term(out),
        }
    }

    /// What the term whose unweighted value is `t` computes.
    fn term(&self, t: TensorId, weight: f64, scaled_by: Option<NodeId>) -> Option<Term> {
        let (p, _) = self.producer_of(t)?;
        if !p.domain_is_default() {
            return None;
        }
        let mut term = Term {
            form: Form::Other,
            node: p.id(),
            value: t,
            weight,
            scaled_by,
            scores: None,
            target: None,
            meet: None,
            logs: Vec::new(),
            reduction: Reduction::Mean,
            logits: false,
        };
        let reduction_attr =
            |n: &NodeRef<'_, 'm>| match n.attr("reduction").and_then(|a| a.string()).as_deref() {
                Some("sum") => Reduction::Sum,
                Some("none") => Reduction::None,
                _ => Reduction::Mean,
            };
        match p.op_type() {
            "SoftmaxCrossEntropyLoss" | "NegativeLogLikelihoodLoss" => {
                term.form = if p.is("NegativeLogLikelihoodLoss") {
                    Form::NegativeLogLikelihood
                } else if p.input_id(0).is_some_and(|s| self.is_similarity(s)) {
                    Form::Contrastive
                } else {
                    Form::CrossEntropy
                };
                term.scores = p.input_id(0);
                term.target = p.input_id(1).and_then(|l| self.target_below(l));
                term.meet = Some(p.id());
                term.reduction = reduction_attr(&p);
                term.logits = p.is("SoftmaxCrossEntropyLoss");
                return Some(term);
            }
            "ReduceMean" | "ReduceSum" | "ReduceSumSquare" | "ReduceL1" | "ReduceL2" => {
                term.reduction = if p.is("ReduceMean") {
                    Reduction::Mean
                } else {
                    Reduction::Sum
                };
            }
            // `sum / batch`: KL's batchmean, or a mean written by hand; `sum /
            // count`: torch's mean over the labels not ignored.
            "Div" => {
                let (num, den) = (p.input_id(0)?, p.input_id(1)?);
                let (sum, _) = self.producer_of(num)?;
                if !sum.is("ReduceSum") || self.is_behind_weights(den) {
                    return None;
                }
                term.node = sum.id();
                term.reduction = if self.constant_through_of(den).is_some() {
                    Reduction::BatchMean
                } else {
                    Reduction::Mean
                };
            }
            _ => return None,
        }
        self.read_region(&mut term);
        Some(term)
    }

    /// Reads the nodes below a reduction and decides the term's form.
    fn read_region(&self, term: &mut Term) {
        let root = self.node(term.node);
        let mut region: Vec<NodeId> = Vec::new();
        let mut seen = rustc_hash::FxHashSet::default();
        let mut stack: Vec<TensorId> = (0..root.inputs().len())
            .filter_map(|i| root.input_id(i))
            .collect();
        region.push(root.id());
        let mut inputs: Vec<TensorId> = Vec::new();
        let mut reads_model = false;
        while let Some(t) = stack.pop() {
            if region.len() >= REGION {
                break;
            }
            if self.flow().input.get(t).copied().unwrap_or(false) {
                if !inputs.contains(&t) {
                    inputs.push(t);
                }
                continue;
            }
            let Some((p, _)) = self.producer_of(t) else {
                continue;
            };
            if !seen.insert(p.id()) {
                continue;
            }
            if self.weight_layer(p.id()).is_some()
                || self.is_behind_weights(t) && !LOSS_OPS.contains(&p.op_type())
            {
                // The model's output: the region stops here.
                reads_model = true;
                continue;
            }
            region.push(p.id());
            if BOUNDARY.contains(&p.op_type()) {
                reads_model |= self.is_behind_weights(t);
                continue;
            }
            stack.extend((0..p.inputs().len()).filter_map(|i| p.input_id(i)));
        }
        let nodes: Vec<NodeRef<'_, 'm>> = region.iter().map(|&id| self.node(id)).collect();
        term.logs = nodes
            .iter()
            .filter(|n| n.is("Log"))
            .map(|n| n.id())
            .collect();
        let target = inputs.iter().copied().find(|&i| self.is_target_input(i));
        term.target = target;
        // A focal loss reweights a cross-entropy by a power of one minus the
        // probability of the right class.
        let reweighted = nodes.iter().any(|n| {
            n.is("Pow")
                && n.input_id(0)
                    .is_some_and(|b| self.one_minus(self.through_layout(b)).is_some())
        });
        // The loss ops inside.
        if let Some(ce) = nodes
            .iter()
            .skip(1)
            .find(|n| n.is("SoftmaxCrossEntropyLoss") || n.is("NegativeLogLikelihoodLoss"))
        {
            term.form = if reweighted {
                Form::Focal
            } else if ce.is("SoftmaxCrossEntropyLoss") {
                Form::CrossEntropy
            } else {
                Form::NegativeLogLikelihood
            };
            term.scores = ce.input_id(0);
            term.target = ce.input_id(1).and_then(|l| self.target_below(l)).or(target);
            term.meet = Some(ce.id());
            term.logits = ce.is("SoftmaxCrossEntropyLoss");
            return;
        }
        // Binary cross-entropy: a log of p beside a log of 1 - p, or the log of a sigmoid.
        let log_input = |id: NodeId| self.node(id).input_id(0);
        for &l in &term.logs {
            let Some(p) = log_input(l) else { continue };
            let sigmoid = self
                .producer_of(p)
                .filter(|(s, _)| s.is("Sigmoid"))
                .and_then(|(s, _)| s.input_id(0));
            let twin = term
                .logs
                .iter()
                .any(|&m| log_input(m).and_then(|q| self.one_minus(q)) == Some(p));
            if twin || sigmoid.is_some() && target.is_some() {
                term.form = if reweighted {
                    Form::Focal
                } else {
                    Form::BinaryCrossEntropy
                };
                term.scores = sigmoid.or(Some(p));
                term.logits = sigmoid.is_some();
                term.meet = self.meeting(&nodes, target);
                return;
            }
        }
        // KL divergence, `t * (log t - x)`: a log of the very tensor that
        // multiplies (a target input, or a teacher's probabilities).
        let multiplied = |t: TensorId| {
            nodes.iter().any(|n| {
                n.is("Mul")
                    && self
                        .operands(n)
                        .iter()
                        .any(|&x| self.through_layout(x) == t)
            })
        };
        let kl_target = term
            .logs
            .iter()
            .filter_map(|&l| log_input(l).map(|x| self.through_layout(x)))
            .find(|&t| multiplied(t));
        if let Some(t) = kl_target {
            term.form = Form::KlDivergence;
            term.meet = self.meeting(&nodes, Some(t));
            term.scores = self.kl_input(&nodes, t);
            return;
        }
        // ... or `t * log(t / x)`, as Keras writes it.
        let ratio = term.logs.iter().find_map(|&l| {
            let (div, _) = self.producer_of(self.through_layout(log_input(l)?))?;
            if !div.is("Div") {
                return None;
            }
            let (t, x) = (self.through_layout(div.input_id(0)?), div.input_id(1)?);
            multiplied(t).then_some((t, x))
        });
        if let Some((t, x)) = ratio {
            term.form = Form::KlDivergence;
            term.meet = self.meeting(&nodes, Some(t));
            term.scores = Some(x);
            return;
        }
        // A cross-entropy written out: the log of a softmax (or of what
        // stands for probabilities), or a log-softmax, times or gathered at the labels.
        for n in &nodes {
            let probabilities = match n.op_type() {
                "Log" => n.input_id(0).filter(|&x| self.is_behind_weights(x)),
                "LogSoftmax" => n.output_id(0),
                "Sub" if self.softmax(n).is_some_and(|s| s.log) => n.output_id(0),
                _ => None,
            };
            let Some(lp) = probabilities else { continue };
            let used = nodes.iter().find(|m| {
                (m.is("Mul") || m.is("GatherElements") || m.is("Gather"))
                    && self.operands(m).iter().any(|&x| {
                        self.through_layout(x) == self.through_layout(n.output_id(0).unwrap_or(lp))
                    })
            });
            let Some(used) = used else { continue };
            let logits = self.softmax_scores(lp);
            term.form = if logits.is_some_and(|s| self.is_similarity(s)) {
                Form::Contrastive
            } else {
                Form::CrossEntropyWritten
            };
            term.meet = Some(used.id());
            term.scores = logits.or(Some(lp));
            term.logits = logits.is_some();
            if used.is("GatherElements") || used.is("Gather") {
                term.target = used
                    .input_id(1)
                    .and_then(|l| self.target_below(l))
                    .or(target);
            }
            if reweighted {
                term.form = Form::Focal;
            }
            return;
        }
        // `-x[label]` on something that is not a log-probability: torch's
        // decomposition of `F.nll_loss`, whatever it was given.
        if let Some(g) = nodes.iter().find(|n| {
            n.is("GatherElements")
                && n.input_id(0).is_some_and(|s| self.is_behind_weights(s))
                && n.input_id(1).and_then(|l| self.target_below(l)).is_some()
        }) {
            term.form = Form::NegativeLogLikelihood;
            term.meet = Some(g.id());
            term.scores = g.input_id(0);
            term.target = g.input_id(1).and_then(|l| self.target_below(l));
            return;
        }
        // Differences: squared, absolute, Huber.
        let squared = nodes.iter().any(|n| {
            n.is("ReduceSumSquare")
                || n.is("Pow") && n.input(1).and_then(|e| self.scalar(e)) == Some(2.0)
                || n.is("Mul") && self.same_value(n.input_id(0), n.input_id(1))
        });
        let absolute = nodes.iter().any(|n| n.is("Abs") || n.is("ReduceL1"));
        let huber = absolute
            && nodes.iter().any(|n| n.is("Where"))
            && nodes.iter().any(|n| n.is("Less") || n.is("Greater"));
        let difference = nodes.iter().find(|n| {
            n.is("Sub") && {
                let ops = self.operands(n);
                ops.len() == 2 && ops.iter().any(|&x| self.is_behind_weights(x))
            }
        });
        if let (Some(d), true) = (difference, squared || absolute) {
            let ops = self.operands(d);
            let other = ops.iter().copied().find(|&x| !self.is_behind_weights(x));
            let target_of =
                other.and_then(|x| self.target_below(x).or_else(|| self.input_below(x)));
            term.meet = Some(d.id());
            term.scores = ops.iter().copied().find(|&x| self.is_behind_weights(x));
            term.target = target_of;
            term.form = match target_of {
                // Noise the model's input was corrupted with, predicted back.
                Some(t) if self.feeds_weights(t) => Form::NoisePrediction,
                Some(_) if huber => Form::Huber,
                Some(_) if squared => Form::Squared,
                Some(_) => Form::Absolute,
                None => Form::SelfComparison,
            };
            return;
        }
        term.form = if target.is_some() {
            Form::Other
        } else if reads_model || !inputs.is_empty() {
            Form::SelfComparison
        } else {
            Form::Penalty
        };
    }

    /// `x` in a KL divergence's `t * (log t - x)`: the operand beside `log t`
    /// in its subtraction, or beside `t` in the product `t * x`.
    fn kl_input(&self, nodes: &[NodeRef<'_, 'm>], t: TensorId) -> Option<TensorId> {
        let is_log_t = |x: TensorId| {
            self.producer_of(self.through_layout(x))
                .is_some_and(|(p, _)| {
                    p.is("Log") && p.input_id(0).map(|i| self.through_layout(i)) == Some(t)
                })
        };
        let derived = |x: TensorId| {
            self.producer_of(x).is_some_and(|(p, _)| {
                matches!(p.op_type(), "Sub" | "Mul" | "Where" | "Add" | "Neg" | "Log")
            })
        };
        for n in nodes {
            let ops = self.operands(n);
            if ops.len() != 2 {
                continue;
            }
            if n.is("Sub") && is_log_t(ops[0]) && !derived(ops[1]) {
                return Some(ops[1]);
            }
            if n.is("Mul") {
                let (a, b) = (self.through_layout(ops[0]), self.through_layout(ops[1]));
                let other = if a == t {
                    b
                } else if b == t {
                    a
                } else {
                    continue;
                };
                if other != t && !is_log_t(other) && !derived(other) {
                    return Some(other);
                }
            }
        }
        None
    }

    /// Whether two tensors hold the same value: one tensor, or two nodes of
    /// one op on the same inputs (TorchScript writes `(a - b) * (a - b)`
    /// with the subtraction twice).
    fn same_value(&self, a: Option<TensorId>, b: Option<TensorId>) -> bool {
        let (Some(a), Some(b)) = (a, b) else {
            return false;
        };
        if a == b {
            return true;
        }
        match (self.producer_of(a), self.producer_of(b)) {
            (Some((p, i)), Some((q, j))) => {
                i == j
                    && p.op_type() == q.op_type()
                    && p.inputs() == q.inputs()
                    && p.inputs().len() <= 3
            }
            _ => false,
        }
    }

    /// The computed operands of a node.
    fn operands(&self, n: &NodeRef<'_, 'm>) -> Vec<TensorId> {
        (0..n.inputs().len())
            .filter_map(|i| n.input_id(i))
            .filter(|&x| self.constant_through_of(x).is_none())
            .collect()
    }

    /// The elementwise node of the region that reads both `p`'s side and the target.
    fn meeting(&self, nodes: &[NodeRef<'_, 'm>], target: Option<TensorId>) -> Option<NodeId> {
        let t = target?;
        nodes
            .iter()
            .find(|n| {
                n.is("Mul")
                    && self.operands(n).iter().any(|&x| {
                        self.through_layout(x) == t
                            || self.one_minus(x).map(|y| self.through_layout(y)) == Some(t)
                    })
            })
            .map(|n| n.id())
    }

    /// The scores a softmax or log-softmax normalizes, through a `Log` of a softmax.
    fn softmax_scores(&self, t: TensorId) -> Option<TensorId> {
        let (p, _) = self.producer_of(self.through_layout(t))?;
        if let Some(s) = self.softmax(&p) {
            return Some(s.scores);
        }
        if p.is("Log") {
            let (q, _) = self.producer_of(self.through_layout(p.input_id(0)?))?;
            return self.softmax(&q).map(|s| s.scores);
        }
        None
    }

    /// Whether scores are a similarity matrix: a product of two computed
    /// embeddings, possibly scaled by a temperature.
    fn is_similarity(&self, t: TensorId) -> bool {
        let mut t = t;
        for _ in 0..8 {
            let Some((p, _)) = self.producer_of(self.through_layout(t)) else {
                return false;
            };
            match p.op_type() {
                "MatMul" | "Gemm" if self.weight_layer(p.id()).is_none() => {
                    let ops = self.operands(&p);
                    return ops.len() == 2 && ops.iter().all(|&x| self.is_behind_weights(x));
                }
                "Mul" | "Div" => match self.operands(&p).as_slice() {
                    &[one] => t = one,
                    _ => return false,
                },
                _ => return false,
            }
        }
        false
    }

    /// The target input a label tensor comes from, through casts and layout
    /// ops (dynamo casts integer labels before a loss op).
    fn target_below(&self, t: TensorId) -> Option<TensorId> {
        self.input_below(t).filter(|&i| self.is_target_input(i))
    }

    /// The graph input behind `t`, through layout ops and casts.
    fn input_below(&self, t: TensorId) -> Option<TensorId> {
        let mut t = t;
        for _ in 0..16 {
            if self.flow().input.get(t).copied().unwrap_or(false) {
                return Some(t);
            }
            let (p, _) = self.producer_of(t)?;
            // `where(label != ignore_index, label, 0)`: torch's ignored labels.
            if p.is("Where") {
                t = p.input_id(1)?;
                continue;
            }
            if !(self.is_value_preserving(&p)
                || p.is("Cast")
                || p.is("Expand")
                || p.is("Unsqueeze"))
            {
                return None;
            }
            t = p.input_id(0)?;
        }
        None
    }
}

/// Ops a loss computes on the model's output, which the region reads through.
const LOSS_OPS: &[&str] = &[
    "Sub",
    "Add",
    "Mul",
    "Div",
    "Neg",
    "Abs",
    "Pow",
    "Log",
    "Exp",
    "Max",
    "Min",
    "Clip",
    "Where",
    "Less",
    "Greater",
    "Equal",
    "IsNaN",
    "Not",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceMax",
    "Squeeze",
    "Unsqueeze",
    "Reshape",
    "Expand",
    "Cast",
    "Identity",
    "Flatten",
    "GatherElements",
    "Gather",
    "Sqrt",
    "SoftmaxCrossEntropyLoss",
    "NegativeLogLikelihoodLoss",
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "Softplus",
    "Relu",
];

/// Ops where the region stops reading: what they read is the model's.
const BOUNDARY: &[&str] = &["Softmax", "LogSoftmax", "Sigmoid", "Relu", "Softplus"];

/// What a `Log` takes the log of, for the loss rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogArgument {
    /// Probabilities: a sigmoid, `1 - p`, a softmax guarded by a clip or an
    /// epsilon. Their log is a log-likelihood.
    Probabilities,
    /// A softmax itself: `log(softmax(z))`, which `log_softmax` computes without underflow.
    Softmax,
    /// Something positive by construction (`exp`, a sum of squares, a
    /// target): no rule's business.
    Positive,
    /// A clip or clamp of values that are not probabilities (logits).
    Clipped,
    /// A ReLU's output: zero for every negative input.
    Relu,
    /// Values nothing bounds: a weight layer's output, a tanh.
    Unbounded,
}

impl<'m> Graph<'m> {
    /// What the `Log` node `log` takes the log of.
    pub fn log_argument(&self, log: &NodeRef<'_, 'm>) -> LogArgument {
        let Some(t) = log.input_id(0).map(|t| self.through_layout(t)) else {
            return LogArgument::Positive;
        };
        if !self.is_behind_weights(t) {
            return LogArgument::Positive;
        }
        if self.is_probability(t) {
            return match self.producer_of(t) {
                Some((p, _)) if self.softmax(&p).is_some() => LogArgument::Softmax,
                _ => LogArgument::Probabilities,
            };
        }
        let Some((p, _)) = self.producer_of(t) else {
            return LogArgument::Unbounded;
        };
        let computed = self.operands(&p);
        match p.op_type() {
            "Clip" | "Max" | "Min" => match computed.as_slice() {
                [x] if self.is_probability(*x) => LogArgument::Probabilities,
                [x] if self.is_non_negative(*x) => LogArgument::Positive,
                _ => LogArgument::Clipped,
            },
            "Relu" => LogArgument::Relu,
            "Add" => match computed.as_slice() {
                [x] if self.is_probability(*x) => LogArgument::Probabilities,
                [x] if self.is_non_negative(*x) => LogArgument::Positive,
                _ => LogArgument::Unbounded,
            },
            _ if self.is_non_negative(t) => LogArgument::Positive,
            // A ratio or a reduction (log-sum-exp, a normalization) is the author's arithmetic.
            "Div" | "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceLogSumExp" => {
                LogArgument::Positive
            }
            _ => LogArgument::Unbounded,
        }
    }

    /// Whether `t` holds probabilities: a softmax, a sigmoid, one minus
    /// either, or a clip of them.
    pub fn is_probability(&self, t: TensorId) -> bool {
        let mut t = self.through_layout(t);
        for _ in 0..4 {
            let Some((p, _)) = self.producer_of(t) else {
                return false;
            };
            if self.softmax(&p).is_some_and(|s| !s.log) || p.is("Sigmoid") || p.is("HardSigmoid") {
                return true;
            }
            let next = match p.op_type() {
                "Clip" | "Max" | "Min" => match self.operands(&p).as_slice() {
                    [x] => *x,
                    _ => return false,
                },
                _ => match self.one_minus(t) {
                    Some(x) => x,
                    None => return false,
                },
            };
            t = self.through_layout(next);
        }
        false
    }

    /// Whether `t` is non-negative by construction.
    fn is_non_negative(&self, t: TensorId) -> bool {
        let Some((p, _)) = self.producer_of(self.through_layout(t)) else {
            return false;
        };
        match p.op_type() {
            "Relu" | "Abs" | "Exp" | "Softplus" | "Sigmoid" | "Softmax" | "Sqrt"
            | "ReduceSumSquare" | "ReduceL2" | "ReduceL1" => true,
            "Mul" => self.same_value(p.input_id(0), p.input_id(1)),
            "Pow" => p.input(1).and_then(|e| self.scalar(e)) == Some(2.0),
            _ => false,
        }
    }
}
