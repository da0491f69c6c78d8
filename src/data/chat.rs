//! Chat templates and stop tokens: what Hugging Face's `tokenizer_config.json`
//! (`chat_template`, `bos_token`, `eos_token`...; or `chat_template.jinja`) and
//! `generation_config.json` (`eos_token_id`) add to a tokenizer, so that an
//! instruct model is prompted in the format it was tuned on and stops where its
//! turn ends.
//!
//! A template renders as transformers' `apply_chat_template` renders it: Jinja
//! with `trim_blocks` and `lstrip_blocks`, loop controls, Python's string methods,
//! `raise_exception(message)` and `strftime_now(format)` (the local date and time),
//! given `messages` (each a `role` and a `content`), `add_generation_prompt` and
//! the special tokens' texts (`bos_token`, `eos_token`, `pad_token`, `unk_token`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks: `system`, `user` or `assistant` (what the template knows).
    pub role: String,
    /// What they say.
    pub content: String,
}

impl Message {
    /// A message of `role` saying `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A tokenizer's chat template, its special tokens' texts and the ids that end
/// a reply (see the module docs). The default holds none of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatSettings {
    /// The Jinja chat template, if the tokenizer has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Special tokens' texts by name (`bos_token`, `eos_token`, `pad_token`,
    /// `unk_token`), as the template reads them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub special_tokens: BTreeMap<String, String>,
    /// Token ids that end generation (`generation_config.json`'s
    /// `eos_token_id`, else `config.json`'s); empty: the tokenizer's end of text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_ids: Vec<u32>,
    /// How the model's makers would have it sample (`generation_config.json`).
    #[serde(default, skip_serializing_if = "SamplingDefaults::is_empty")]
    pub sampling: SamplingDefaults,
}

/// The sampling settings a `generation_config.json` states, which `wgml
/// generate` and `wgml chat` take where no option says otherwise, as
/// transformers' `generate` does. Unstated settings stay `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingDefaults {
    /// `do_sample`: false draws greedily.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_sample: Option<bool>,
    /// `temperature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// `top_k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// `top_p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// `min_p`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// `repetition_penalty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
}

impl SamplingDefaults {
    /// True when the file stated none of them.
    pub fn is_empty(&self) -> bool {
        *self == SamplingDefaults::default()
    }

    /// The settings `config` (a `generation_config.json`) states; an error
    /// naming the key whose value is not of its kind.
    fn from_json(config: &serde_json::Value) -> std::result::Result<Self, String> {
        let number = |key: &str| match &config[key] {
            serde_json::Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(|x| Some(x as f32))
                .ok_or_else(|| format!("its {key} is not a number")),
        };
        Ok(SamplingDefaults {
            do_sample: match &config["do_sample"] {
                serde_json::Value::Null => None,
                v => Some(v.as_bool().ok_or("its do_sample is neither true nor false")?),
            },
            temperature: number("temperature")?,
            top_k: match &config["top_k"] {
                serde_json::Value::Null => None,
                v => Some(v.as_u64().ok_or("its top_k is not a whole number")? as usize),
            },
            top_p: number("top_p")?,
            min_p: number("min_p")?,
            repetition_penalty: number("repetition_penalty")?,
        })
    }

    /// As `generation_config.json` keys.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What marks a `raise_exception` call's error, to tell its message from
/// minijinja's own.
const RAISED: &str = "raise_exception: ";

/// The special tokens a template may read, by their `tokenizer_config.json` keys.
pub const SPECIAL_TOKEN_KEYS: [&str; 4] = ["bos_token", "eos_token", "pad_token", "unk_token"];

impl ChatSettings {
    /// The template; an error saying so when there is none.
    pub fn template(&self) -> Result<&str> {
        self.template.as_deref().ok_or_else(|| {
            Error::invalid(
                "the tokenizer has no chat template (tokenizer_config.json's chat_template or \
                 chat_template.jinja when imported): give the prompt as plain text instead",
            )
        })
    }

    /// True when it holds nothing (no template, no special token, no stop id).
    pub fn is_empty(&self) -> bool {
        *self == ChatSettings::default()
    }

    /// The conversation `messages` as the template writes it, followed, when
    /// `add_generation_prompt`, by what opens the assistant's reply. Errors
    /// without a template, on a template wgml cannot render, and with the
    /// message of the template's own `raise_exception`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let source = self.template()?;
        let bad = |e: minijinja::Error| {
            // A raise_exception call's message is the template's own words.
            let message = match e.detail().and_then(|d| d.strip_prefix(RAISED)) {
                Some(raised) => raised.to_string(),
                None => format!("{e:#}"),
            };
            Error::invalid(format!("the chat template: {message}"))
        };
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(bad)?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("{RAISED}{message}"),
                ))
            },
        );
        env.add_function("strftime_now", |format: String| {
            jiff::Zoned::now().strftime(&format).to_string()
        });
        let template = env.template_from_str(source).map_err(bad)?;
        let mut context: BTreeMap<&str, minijinja::Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.as_str(), minijinja::Value::from(v.as_str())))
            .collect();
        context.insert(
            "messages",
            minijinja::Value::from(minijinja::value::Serde(messages)),
        );
        context.insert("add_generation_prompt", add_generation_prompt.into());
        template.render(context).map_err(bad)
    }

    /// What a Hugging Face folder `dir` says: the template from
    /// `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template`
    /// (its `default` when it names several, else the first), else
    /// `chat_template.json`'s; the
    /// special tokens' texts from `tokenizer_config.json`; the stop ids from
    /// `generation_config.json`'s `eos_token_id`, else `config.json`'s; the
    /// sampling defaults from `generation_config.json`. Missing
    /// files and keys leave their parts empty; a file that is there but not
    /// what Hugging Face writes is an error naming it.
    pub fn from_folder(dir: &Path) -> Result<ChatSettings> {
        let mut settings = ChatSettings::default();
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            settings.template = Some(std::fs::read_to_string(&jinja).map_err(|source| Error::Io {
                path: jinja.display().to_string(),
                source,
            })?);
        }
        if let Some(config) = json_file(dir, "tokenizer_config.json")? {
            let bad = |m: &str| Error::Data {
                path: dir.join("tokenizer_config.json").display().to_string(),
                message: m.to_string(),
            };
            if settings.template.is_none() {
                settings.template = match &config["chat_template"] {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Array(named) => named
                        .iter()
                        .find(|t| t["name"] == "default")
                        .or(named.first())
                        .and_then(|t| t["template"].as_str())
                        .map(String::from),
                    _ => {
                        return Err(bad(
                            "its chat_template is neither text nor a list of named templates",
                        ));
                    }
                };
            }
            for key in SPECIAL_TOKEN_KEYS {
                // A token is its text, or an AddedToken's {"content": ...}.
                let value = &config[key];
                let text = value.as_str().or_else(|| value["content"].as_str());
                match (text, value) {
                    (Some(t), _) => {
                        settings.special_tokens.insert(key.into(), t.into());
                    }
                    (None, serde_json::Value::Null) => {}
                    (None, _) => {
                        return Err(bad(&format!(
                            "its {key} is neither text nor {{\"content\": text}}"
                        )));
                    }
                }
            }
        }
        if settings.template.is_none()
            && let Some(config) = json_file(dir, "chat_template.json")?
        {
            settings.template = config["chat_template"].as_str().map(String::from);
        }
        let generation = json_file(dir, "generation_config.json")?;
        if let Some(config) = &generation {
            settings.sampling = SamplingDefaults::from_json(config).map_err(|message| Error::Data {
                path: dir.join("generation_config.json").display().to_string(),
                message,
            })?;
        }
        // Each file read once: config.json only when generation_config.json names no stop.
        let stops = |name: &str, config: &serde_json::Value| {
            token_ids(&config["eos_token_id"]).ok_or_else(|| Error::Data {
                path: dir.join(name).display().to_string(),
                message: "its eos_token_id is neither a token id nor a list of them".into(),
            })
        };
        settings.stop_ids = match &generation {
            Some(config) => stops("generation_config.json", config)?,
            None => Vec::new(),
        };
        if settings.stop_ids.is_empty()
            && let Some(config) = json_file(dir, "config.json")?
        {
            settings.stop_ids = stops("config.json", &config)?;
        }
        Ok(settings)
    }
}

/// `value` as token ids: one, a list, or none (null); `None` for anything else.
fn token_ids(value: &serde_json::Value) -> Option<Vec<u32>> {
    let id = |v: &serde_json::Value| v.as_u64().and_then(|i| u32::try_from(i).ok());
    match value {
        serde_json::Value::Null => Some(Vec::new()),
        serde_json::Value::Array(ids) => ids.iter().map(id).collect(),
        v => id(v).map(|i| vec![i]),
    }
}

/// The JSON of file `name` in `dir`, `None` when there is no such file.
fn json_file(dir: &Path, name: &str) -> Result<Option<serde_json::Value>> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("is not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's (ChatML) template, with its default system prompt.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn chatml() -> ChatSettings {
        ChatSettings {
            template: Some(CHATML.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_chatml_template_renders_as_transformers_does() {
        let got = chatml().render(&[Message::new("user", "Hi!")], true).unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging \
             Face<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let got = chatml()
            .render(
                &[Message::new("system", "Be brief."), Message::new("user", "Hi!")],
                false,
            )
            .unwrap();
        assert_eq!(
            got,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
        );
    }

    /// Block tags own their lines (trim_blocks, lstrip_blocks: the newline after
    /// a tag goes, so the blank line after `endif` ends each turn), Python's
    /// string methods work, the special tokens are there, and raise_exception's
    /// message is the error's. The expected text is jinja2's (Python) with
    /// `trim_blocks=True, lstrip_blocks=True`.
    #[test]
    fn templates_get_what_transformers_gives_them() {
        let template = "{{ bos_token }}\n{% for m in messages %}\n    {% if m.role == 'system' %}\n{{ raise_exception('no system messages') }}\n    {% endif %}\n[{{ m.role.upper() }}] {{ m.content.strip() }}{% if m.content.startswith('Q') %}?{% endif %}\n\n{% endfor %}";
        let settings = ChatSettings {
            template: Some(template.into()),
            special_tokens: BTreeMap::from([("bos_token".into(), "<s>".into())]),
            ..Default::default()
        };
        let got = settings
            .render(
                &[Message::new("user", "Q one "), Message::new("assistant", " A")],
                false,
            )
            .unwrap();
        assert_eq!(got, "<s>\n[USER] Q one?\n[ASSISTANT] A\n");
        let e = settings
            .render(&[Message::new("system", "x")], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the chat template: no system messages"), "{e}");
        let e = ChatSettings::default().render(&[], true).unwrap_err().to_string();
        assert!(e.contains("no chat template"), "{e}");
        let broken = ChatSettings {
            template: Some("{% for %}".into()),
            ..Default::default()
        };
        let e = broken.render(&[], true).unwrap_err().to_string();
        assert!(e.contains("the chat template: "), "{e}");
        // The date a Llama 3.2 template asks for.
        let dated = ChatSettings {
            template: Some("{{ strftime_now('%Y') }}".into()),
            ..Default::default()
        };
        let year: i32 = dated.render(&[], false).unwrap().parse().unwrap();
        assert!(year >= 2026, "{year}");
    }

    #[test]
    fn stop_ids_are_one_or_a_list() {
        assert_eq!(token_ids(&serde_json::json!(2)), Some(vec![2]));
        assert_eq!(
            token_ids(&serde_json::json!([128001, 128009])),
            Some(vec![128001, 128009])
        );
        assert_eq!(token_ids(&serde_json::json!(null)), Some(vec![]));
        assert_eq!(token_ids(&serde_json::json!("2")), None);
        assert_eq!(token_ids(&serde_json::json!([-1])), None);
    }
}
