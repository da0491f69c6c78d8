//! Chat templates (`wgml::data::chat`) against transformers' apply_chat_template
//! (`golden/make_chat.py`): four templates written for the test, each leaning
//! on the Jinja features real ones use (a default system turn, a namespace,
//! |trim, loop.index0, .strip(), raise_exception), render the same text and,
//! through llama-tiny's tokenizer, the same ids; a template's refusal is its own
//! message; and the settings a Hugging Face folder gives come back from a wgml
//! checkpoint.

use std::collections::BTreeMap;

use wgml::data::chat::{ChatSettings, Message};
use wgml::data::text::Vocabulary;

use crate::common::*;

fn golden() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(repo_file("kernels-tests/golden/chat.json")).unwrap()).unwrap()
}

fn messages(v: &serde_json::Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The generator's template `name` with llama-tiny's special tokens.
fn settings(name: &str) -> ChatSettings {
    ChatSettings {
        template: Some(golden()["templates"][name].as_str().unwrap().to_string()),
        special_tokens: BTreeMap::from([
            ("bos_token".into(), "<|begin_of_text|>".into()),
            ("eos_token".into(), "<|end_of_text|>".into()),
        ]),
        ..Default::default()
    }
}

#[test]
fn chat_templates_render_the_text_and_ids_transformers_gives() {
    let vocabulary =
        Vocabulary::from_file(&repo_file("kernels-tests/golden/llama-tiny/tokenizer.json")).unwrap();
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{}", cases.len());
    for (i, case) in cases.iter().enumerate() {
        let name = case["template"].as_str().unwrap();
        let add = case["add_generation_prompt"].as_bool().unwrap();
        let text = settings(name).render(&messages(&case["messages"]), add).unwrap();
        assert_eq!(
            text,
            case["text"].as_str().unwrap(),
            "case {i} ({name}, generation prompt {add})"
        );
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            vocabulary.encode(text.as_bytes()).unwrap(),
            ids,
            "case {i} ({name})"
        );
    }
    for refusal in g["refusals"].as_array().unwrap() {
        let name = refusal["template"].as_str().unwrap();
        let e = settings(name)
            .render(&messages(&refusal["messages"]), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "the chat template: {}",
                refusal["error"].as_str().unwrap()
            )),
            "{e}"
        );
    }
}

/// What a folder's tokenizer_config.json, generation_config.json and
/// chat_template.jinja say, read in the order transformers reads them.
#[test]
fn a_folders_chat_settings_are_read_where_transformers_reads_them() {
    let dir = fresh_dir("chat-settings");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    assert_eq!(ChatSettings::from_folder(&dir).unwrap(), ChatSettings::default());
    write(
        "tokenizer_config.json",
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
            "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null}"#,
    );
    write("config.json", r#"{"eos_token_id": 2}"#);
    let s = ChatSettings::from_folder(&dir).unwrap();
    assert_eq!(s.template.as_deref(), Some("D"));
    assert_eq!(
        s.special_tokens,
        BTreeMap::from([
            ("bos_token".into(), "<s>".into()),
            ("eos_token".into(), "</s>".into())
        ])
    );
    assert_eq!(s.stop_ids, vec![2]);
    // chat_template.jinja wins over the config's; generation_config.json over
    // config.json, with the sampling it states.
    write("chat_template.jinja", "J");
    write(
        "generation_config.json",
        r#"{"eos_token_id": [7, 9], "do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 20}"#,
    );
    let s = ChatSettings::from_folder(&dir).unwrap();
    assert_eq!((s.template.as_deref(), &s.stop_ids), (Some("J"), &vec![7, 9]));
    let want = wgml::data::chat::SamplingDefaults {
        do_sample: Some(true),
        temperature: Some(0.6),
        top_k: Some(20),
        top_p: Some(0.9),
        ..Default::default()
    };
    assert_eq!(s.sampling, want);
    write("generation_config.json", r#"{"temperature": "hot"}"#);
    let e = ChatSettings::from_folder(&dir).unwrap_err().to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("temperature is not a number"),
        "{e}"
    );
    write("generation_config.json", r#"{"eos_token_id": "9"}"#);
    let e = ChatSettings::from_folder(&dir).unwrap_err().to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("eos_token_id"),
        "{e}"
    );
    write("generation_config.json", "{");
    let e = ChatSettings::from_folder(&dir).unwrap_err().to_string();
    assert!(
        e.contains("generation_config.json") && e.contains("not JSON"),
        "{e}"
    );
}
