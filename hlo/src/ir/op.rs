//! The closed set of HLO operations tpu-run emits, with their attributes.
//! Operands live on the instruction; an `Op` carries only what is not an operand.
use super::ids::CompId;
use super::sharding::Sharding;
use crate::literal::Literal;
use crate::shape::Shape;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sign,
    Exp,
    Expm1,
    Log,
    Log1p,
    Tanh,
    Logistic,
    Sqrt,
    Rsqrt,
    Erf,
    Floor,
    Ceil,
    /// Round half away from zero (XLA `round-nearest-afz`).
    Round,
    /// Round half to even (XLA `round-nearest-even`).
    RoundEven,
    Not,
    IsFinite,
    Cos,
    Sin,
    Copy,
}

impl UnaryOp {
    pub fn opcode(self) -> &'static str {
        match self {
            Self::Neg => "negate",
            Self::Abs => "abs",
            Self::Sign => "sign",
            Self::Exp => "exponential",
            Self::Expm1 => "exponential-minus-one",
            Self::Log => "log",
            Self::Log1p => "log-plus-one",
            Self::Tanh => "tanh",
            Self::Logistic => "logistic",
            Self::Sqrt => "sqrt",
            Self::Rsqrt => "rsqrt",
            Self::Erf => "erf",
            Self::Floor => "floor",
            Self::Ceil => "ceil",
            Self::Round => "round-nearest-afz",
            Self::RoundEven => "round-nearest-even",
            Self::Not => "not",
            Self::IsFinite => "is-finite",
            Self::Cos => "cosine",
            Self::Sin => "sine",
            Self::Copy => "copy",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Max,
    Min,
    Pow,
    Atan2,
    And,
    Or,
    Xor,
    ShiftLeft,
    ShiftRightArithmetic,
    ShiftRightLogical,
}

impl BinaryOp {
    pub fn opcode(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Sub => "subtract",
            Self::Mul => "multiply",
            Self::Div => "divide",
            Self::Rem => "remainder",
            Self::Max => "maximum",
            Self::Min => "minimum",
            Self::Pow => "power",
            Self::Atan2 => "atan2",
            Self::And => "and",
            Self::Or => "or",
            Self::Xor => "xor",
            Self::ShiftLeft => "shift-left",
            Self::ShiftRightArithmetic => "shift-right-arithmetic",
            Self::ShiftRightLogical => "shift-right-logical",
        }
    }

    /// Whether `op(a, b) == op(b, a)` (used by CSE to canonicalize operand order).
    pub fn is_commutative(self) -> bool {
        matches!(
            self,
            Self::Add | Self::Mul | Self::Max | Self::Min | Self::And | Self::Or | Self::Xor
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareDir {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareDir {
    pub fn name(self) -> &'static str {
        match self {
            Self::Eq => "EQ",
            Self::Ne => "NE",
            Self::Lt => "LT",
            Self::Le => "LE",
            Self::Gt => "GT",
            Self::Ge => "GE",
        }
    }
}

/// How a compare orders its operands (XLA `comparison_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareType {
    Float,
    TotalOrder,
    Signed,
    Unsigned,
}

impl CompareType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "FLOAT",
            Self::TotalOrder => "TOTALORDER",
            Self::Signed => "SIGNED",
            Self::Unsigned => "UNSIGNED",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Default,
    High,
    Highest,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::High => "high",
            Self::Highest => "highest",
        }
    }
}

/// dot_general dimension numbers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct DotDims {
    pub lhs_batch: Vec<i64>,
    pub rhs_batch: Vec<i64>,
    pub lhs_contracting: Vec<i64>,
    pub rhs_contracting: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct GatherDims {
    pub offset_dims: Vec<i64>,
    pub collapsed_slice_dims: Vec<i64>,
    pub start_index_map: Vec<i64>,
    pub index_vector_dim: i64,
    pub operand_batching_dims: Vec<i64>,
    pub start_indices_batching_dims: Vec<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScatterDims {
    pub update_window_dims: Vec<i64>,
    pub inserted_window_dims: Vec<i64>,
    pub scatter_dims_to_operand_dims: Vec<i64>,
    pub index_vector_dim: i64,
    pub input_batching_dims: Vec<i64>,
    pub scatter_indices_batching_dims: Vec<i64>,
}

/// One dimension of a reduce-window window.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowDim {
    pub size: i64,
    pub stride: i64,
    pub padding_low: i64,
    pub padding_high: i64,
    pub window_dilation: i64,
    pub base_dilation: i64,
}

impl WindowDim {
    /// A window of `size` moving by `stride`, no padding or dilation.
    pub fn new(size: i64, stride: i64) -> Self {
        Self {
            size,
            stride,
            padding_low: 0,
            padding_high: 0,
            window_dilation: 1,
            base_dilation: 1,
        }
    }
}

/// Padding of one dimension for `pad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PadDim {
    pub low: i64,
    pub high: i64,
    pub interior: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RngAlgorithm {
    Default,
    ThreeFry,
    Philox,
}

impl RngAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "rng_default",
            Self::ThreeFry => "rng_three_fry",
            Self::Philox => "rng_philox",
        }
    }
}

/// Which devices take part in a collective together (XLA replica groups).
pub type ReplicaGroups = Vec<Vec<i64>>;

/// Attributes shared by all-reduce, all-gather, reduce-scatter and all-to-all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct CollectiveAttrs {
    pub replica_groups: ReplicaGroups,
    /// Set for cross-partition collectives (SPMD); `None` means cross-replica.
    pub channel_id: Option<i64>,
    pub use_global_device_ids: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Parameter {
        number: u32,
        name: String,
    },
    Constant(Literal),
    Iota {
        dim: i64,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare {
        dir: CompareDir,
        ty: CompareType,
    },
    /// Operands: pred, on_true, on_false.
    Select,
    /// Operands: min, x, max.
    Clamp,
    Convert,
    BitcastConvert,
    /// broadcast_in_dim: `dims[i]` is the output dimension of operand dimension i.
    Broadcast {
        dims: Vec<i64>,
    },
    Reshape,
    Transpose {
        perm: Vec<i64>,
    },
    Reverse {
        dims: Vec<i64>,
    },
    Slice {
        starts: Vec<i64>,
        limits: Vec<i64>,
        strides: Vec<i64>,
    },
    /// Operands: array, then one s32/s64 scalar start index per dimension.
    DynamicSlice {
        sizes: Vec<i64>,
    },
    /// Operands: array, update, then one scalar start index per dimension.
    DynamicUpdateSlice,
    Concatenate {
        dim: i64,
    },
    /// Operands: array, padding value.
    Pad {
        dims: Vec<PadDim>,
    },
    Dot {
        dims: DotDims,
        precision: [Precision; 2],
    },
    /// Operands: N inputs then N init values; the result is a tuple when N > 1.
    Reduce {
        dims: Vec<i64>,
        comp: CompId,
    },
    /// Operands: N inputs then N init values.
    ReduceWindow {
        window: Vec<WindowDim>,
        comp: CompId,
    },
    /// Operands: array, start indices.
    Gather {
        dims: GatherDims,
        slice_sizes: Vec<i64>,
        indices_are_sorted: bool,
    },
    /// Operands: array, scatter indices, updates.
    Scatter {
        dims: ScatterDims,
        comp: CompId,
        indices_are_sorted: bool,
        unique_indices: bool,
    },
    /// Operands: one or more arrays sorted together by `comp` (a comparator on 2N scalars).
    Sort {
        dim: i64,
        comp: CompId,
        stable: bool,
    },
    /// Operand: the state; result: (new state, random bits of the output shape).
    RngBitGenerator {
        algorithm: RngAlgorithm,
    },
    Tuple,
    GetTupleElement {
        index: i64,
    },
    AllReduce {
        attrs: CollectiveAttrs,
        comp: CompId,
    },
    AllGather {
        attrs: CollectiveAttrs,
        dim: i64,
    },
    ReduceScatter {
        attrs: CollectiveAttrs,
        dim: i64,
        comp: CompId,
    },
    AllToAll {
        attrs: CollectiveAttrs,
        dim: i64,
    },
    CollectivePermute {
        pairs: Vec<(i64, i64)>,
        channel_id: Option<i64>,
    },
    ReplicaId,
    PartitionId,
    CustomCall {
        target: String,
        backend_config: String,
        /// Layouts (as shapes) the callee expects for its operands; `None` leaves them free.
        operand_layouts: Option<Vec<Shape>>,
        /// The `minor_to_major` the callee writes each array of its result in (the tuple's
        /// elements in order, or the one array); `None` or a missing entry: row-major.
        result_layouts: Vec<Option<Vec<i64>>>,
        has_side_effect: bool,
        api_version: i32,
    },
    OptimizationBarrier,
    /// Operand: the initial loop state.
    While {
        cond: CompId,
        body: CompId,
    },
    /// Operands: branch index (s32) or predicate, then one operand per branch.
    Conditional {
        branches: Vec<CompId>,
    },
    Call {
        comp: CompId,
    },
    /// An annotation-only op carrying a sharding for SPMD (`custom-call` target `Sharding`).
    ShardingHint(Sharding),
}

impl Op {
    /// XLA's opcode string for this op.
    pub fn opcode(&self) -> &'static str {
        match self {
            Op::Parameter { .. } => "parameter",
            Op::Constant(_) => "constant",
            Op::Iota { .. } => "iota",
            Op::Unary(u) => u.opcode(),
            Op::Binary(b) => b.opcode(),
            Op::Compare { .. } => "compare",
            Op::Select => "select",
            Op::Clamp => "clamp",
            Op::Convert => "convert",
            Op::BitcastConvert => "bitcast-convert",
            Op::Broadcast { .. } => "broadcast",
            Op::Reshape => "reshape",
            Op::Transpose { .. } => "transpose",
            Op::Reverse { .. } => "reverse",
            Op::Slice { .. } => "slice",
            Op::DynamicSlice { .. } => "dynamic-slice",
            Op::DynamicUpdateSlice => "dynamic-update-slice",
            Op::Concatenate { .. } => "concatenate",
            Op::Pad { .. } => "pad",
            Op::Dot { .. } => "dot",
            Op::Reduce { .. } => "reduce",
            Op::ReduceWindow { .. } => "reduce-window",
            Op::Gather { .. } => "gather",
            Op::Scatter { .. } => "scatter",
            Op::Sort { .. } => "sort",
            Op::RngBitGenerator { .. } => "rng-bit-generator",
            Op::Tuple => "tuple",
            Op::GetTupleElement { .. } => "get-tuple-element",
            Op::AllReduce { .. } => "all-reduce",
            Op::AllGather { .. } => "all-gather",
            Op::ReduceScatter { .. } => "reduce-scatter",
            Op::AllToAll { .. } => "all-to-all",
            Op::CollectivePermute { .. } => "collective-permute",
            Op::ReplicaId => "replica-id",
            Op::PartitionId => "partition-id",
            Op::CustomCall { .. } | Op::ShardingHint(_) => "custom-call",
            Op::OptimizationBarrier => "opt-barrier",
            Op::While { .. } => "while",
            Op::Conditional { .. } => "conditional",
            Op::Call { .. } => "call",
        }
    }

    /// Computations this op calls, in XLA's `called_computation_ids` order.
    pub fn called_computations(&self) -> Vec<CompId> {
        match self {
            Op::Reduce { comp, .. }
            | Op::ReduceWindow { comp, .. }
            | Op::Scatter { comp, .. }
            | Op::Sort { comp, .. }
            | Op::AllReduce { comp, .. }
            | Op::ReduceScatter { comp, .. }
            | Op::Call { comp } => vec![*comp],
            // XLA keeps the body first (kBodyComputationIndex = 0, condition = 1).
            Op::While { cond, body } => vec![*body, *cond],
            Op::Conditional { branches } => branches.clone(),
            // Listed one by one so a new op that calls a computation cannot be lowered (or
            // verified, or DCE'd) without its callees.
            Op::Parameter { .. }
            | Op::Constant(_)
            | Op::Iota { .. }
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare { .. }
            | Op::Select
            | Op::Clamp
            | Op::Convert
            | Op::BitcastConvert
            | Op::Broadcast { .. }
            | Op::Reshape
            | Op::Transpose { .. }
            | Op::Reverse { .. }
            | Op::Slice { .. }
            | Op::DynamicSlice { .. }
            | Op::DynamicUpdateSlice
            | Op::Concatenate { .. }
            | Op::Pad { .. }
            | Op::Dot { .. }
            | Op::Gather { .. }
            | Op::RngBitGenerator { .. }
            | Op::Tuple
            | Op::GetTupleElement { .. }
            | Op::AllGather { .. }
            | Op::AllToAll { .. }
            | Op::CollectivePermute { .. }
            | Op::ReplicaId
            | Op::PartitionId
            | Op::CustomCall { .. }
            | Op::OptimizationBarrier
            | Op::ShardingHint(_) => vec![],
        }
    }

    /// Whether removing an unused instance would change behaviour (DCE and CSE keep these).
    pub fn has_side_effect(&self) -> bool {
        match self {
            Op::CustomCall {
                has_side_effect, ..
            } => *has_side_effect,
            Op::Parameter { .. } => true,
            _ => false,
        }
    }

    /// Collectives are never merged by CSE: two identical ones are two communications.
    pub fn is_collective(&self) -> bool {
        matches!(
            self,
            Op::AllReduce { .. }
                | Op::AllGather { .. }
                | Op::ReduceScatter { .. }
                | Op::AllToAll { .. }
                | Op::CollectivePermute { .. }
        )
    }
}
