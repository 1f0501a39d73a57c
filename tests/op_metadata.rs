//! The BERT pretraining step carries the builder's name scopes into the lowered proto
//! (`OpMetadata.op_name`, `encoder/layer_0/attention/dot`), its backward under `grad/...`, and
//! XLA compiles it. With `XLA_FLAGS=--xla_dump_to=DIR --xla_dump_hlo_as_text` the optimized
//! HLO's fusions then name the layer they came from.
mod common;
use common::client;
use hlo::proto::HloModuleProto;
use tpu_run::model::{BatchShapes, BertConfig, Execution};
use tpu_run::pretrain::program::train_program;
use tpu_run::train::{AdamWeightDecay, Schedule, StepConfig};

/// `(opcode, op_name)` of every instruction of the entry computation (`""`: no metadata).
fn entry_op_names(p: &HloModuleProto) -> Vec<(String, String)> {
    let entry = p
        .computations
        .iter()
        .find(|c| c.id == p.entry_computation_id)
        .expect("entry computation");
    entry
        .instructions
        .iter()
        .map(|i| {
            let name = i.metadata.as_ref().map(|m| m.op_name.clone());
            (i.opcode.clone(), name.unwrap_or_default())
        })
        .collect()
}

fn count(names: &[(String, String)], opcode: &str, op_name: &str) -> usize {
    names
        .iter()
        .filter(|(o, n)| o == opcode && n == op_name)
        .count()
}

#[test]
fn bert_step_names_every_op_by_layer_and_compiles() {
    let mut cfg = BertConfig::preset("tiny").unwrap();
    cfg.vocab_size = 128;
    cfg.max_position_embeddings = 16;
    let micro = BatchShapes {
        batch_size: 2,
        seq_len: 16,
        max_predictions: 4,
        max_instances_per_row: None,
    };
    let step = StepConfig::new(AdamWeightDecay::default(), Schedule::bert(1e-4, 1, 10));
    let program = train_program(&cfg, Execution::default(), &micro, &step).unwrap();
    let proto = hlo::lower::to_proto(&program.module).unwrap();
    let names = entry_op_names(&proto);

    // q, k, v, scores, context and the output projection of each layer, then their backward.
    for l in 0..cfg.num_hidden_layers {
        let attention = format!("encoder/layer_{l}/attention/dot");
        assert_eq!(count(&names, "dot", &attention), 6, "{attention}");
        assert!(count(&names, "dot", &format!("grad/{attention}")) >= 6);
        assert_eq!(
            count(&names, "dot", &format!("encoder/layer_{l}/ffn/dot")),
            2
        );
    }
    for (opcode, op_name) in [
        ("gather", "embeddings/gather"),
        ("dot", "pooler/dot"),
        ("dot", "mlm_head/dot"),
        ("dot", "nsp_head/dot"),
        ("sqrt", "clip/sqrt"),
    ] {
        assert!(count(&names, opcode, op_name) >= 1, "{op_name}");
    }
    assert!(names.iter().any(|(_, n)| n.starts_with("optimizer/")));
    // Every matmul of the step comes from a named part of the model.
    let unnamed: Vec<_> = names
        .iter()
        .filter(|(o, n)| o == "dot" && n.is_empty())
        .collect();
    assert!(unnamed.is_empty(), "{unnamed:?}");

    let text = hlo::text::to_text(&program.module);
    assert!(text.contains("metadata={op_name=\"encoder/layer_0/attention/dot\"}"));

    let bytes = program.module.to_proto_bytes().unwrap();
    client()
        .compile(&bytes, &program.layout.compile_options())
        .expect("XLA accepts the step with op metadata");
}
