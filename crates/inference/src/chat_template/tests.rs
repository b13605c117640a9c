//! Rendering tests; expected strings were produced with Python jinja2 under HF's settings.

use super::*;
use crate::messages::{ChatMessage, ContentPart, Role, ToolCall};

// Expected strings below were cross-checked by rendering the same
// templates with Python jinja2 3.1 configured like transformers
// (ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
// extensions=[loopcontrols]) plus HF's tojson / raise_exception).

/// llava-hf/llava-1.5-7b-hf's template, minus the `{% generation %}` tags.
const LLAVA: &str = r#"{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"#;

/// ChatML with a default system prompt, laid out over several lines so
/// that the output depends on trim_blocks / lstrip_blocks.
const CHATML: &str = r#"{% if messages[0]['role'] != 'system' %}
<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
{% endif %}
{% for message in messages %}
{% if message['role'] == 'user' %}
<|im_start|>user
{{ message['content'] }}<|im_end|>
{% elif message['role'] == 'assistant' %}
<|im_start|>assistant
{{ message['content'] }}<|im_end|>
{% else %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}
"#;

/// Qwen2-VL-style template: iterates content parts, handles strings too.
const QWEN2VL: &str = r#"{% set image_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system
You are a helpful assistant.<|im_end|>
{% endif %}<|im_start|>{{ message['role'] }}
{% if message['content'] is string %}{{ message['content'] }}<|im_end|>
{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"#;

const TOOLS: &str = r#"{%- if tools %}
{{- '<tools>' + tools | tojson + '</tools>\n' }}
{%- endif %}
{%- for message in messages %}
  {%- if message.role == 'assistant' and message.tool_calls %}
{%- for tool_call in message.tool_calls %}
  {%- if tool_call.function is defined %}{% set tool_call = tool_call.function %}{% endif %}
{{- '<tool_call>{"name": "' + tool_call.name + '", "arguments": ' + tool_call.arguments | tojson + '}</tool_call>' }}
{%- endfor %}
{{- '[content=' }}{{ message.content is none }}{{ ']\n' }}
  {%- elif message.role == 'tool' %}
{{- '<tool_response id=' + message.tool_call_id + '>' + message.content + '</tool_response>\n' }}
  {%- else %}
{{- message.role.upper() + ': ' + message.content.strip() + '\n' }}
  {%- endif %}
{%- endfor %}
{{- bos_token ~ '|' }}{{ eos_token is defined }}|{{ tools is none }}|{{ none }}"#;

fn text(s: &str) -> ContentPart {
    ContentPart::Text(s.to_owned())
}

fn compile(source: &str) -> ChatTemplate {
    match ChatTemplate::from_source(source.to_owned(), SpecialTokens::default()) {
        Ok(t) => t,
        Err(e) => panic!("template failed to compile: {e}"),
    }
}

fn render(source: &str, messages: &[ChatMessage], opts: &RenderOptions) -> String {
    match compile(source).render(messages, opts) {
        Ok(s) => s,
        Err(e) => panic!("render failed: {e}"),
    }
}

fn llava_conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("You are helpful."),
        ChatMessage::user(vec![ContentPart::Image, text("What is shown?")]),
        ChatMessage::assistant("A cat."),
        ChatMessage::user(vec![text("What color?")]),
    ]
}

#[test]
fn llava_list_template() {
    let tpl = compile(LLAVA);
    assert_eq!(tpl.content_format(), ContentFormat::OpenAi);
    let out = tpl
        .render(&llava_conversation(), &RenderOptions::default())
        .expect("render");
    assert_eq!(
        out,
        "You are helpful. USER: <image>\nWhat is shown? ASSISTANT: A cat. USER: What color? ASSISTANT:"
    );
}

#[test]
fn generation_tags_are_accepted() {
    let with_tags = LLAVA.replacen(
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% endif %}",
        "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}",
        1,
    );
    assert_ne!(with_tags, LLAVA);
    let opts = RenderOptions::default();
    let conv = llava_conversation();
    assert_eq!(
        render(&with_tags, &conv, &opts),
        render(LLAVA, &conv, &opts)
    );
    assert_eq!(
        neutralize_generation_tags("a\n  {%- generation +%}\nb{%endgeneration-%} c"),
        "a\n  {%- if true +%}\nb{% endif -%} c"
    );
}

#[test]
fn chatml_text_template_with_trim_and_lstrip() {
    let tpl = compile(CHATML);
    assert_eq!(tpl.content_format(), ContentFormat::String);
    let conv = vec![
        ChatMessage::user("Hi"),
        ChatMessage::assistant("Hello!"),
        ChatMessage::user("Bye"),
    ];
    let out = tpl
        .render(&conv, &RenderOptions::default())
        .expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without trim_blocks/lstrip_blocks jinja2 gives a different string:
    let without_flags = "\n<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\n\n    \n<|im_start|>user\nHi<|im_end|>\n    \n\n    \n<|im_start|>assistant\nHello!<|im_end|>\n    \n\n    \n<|im_start|>user\nBye<|im_end|>\n    \n\n\n<|im_start|>assistant\n";
    assert_ne!(out, without_flags);

    // System present, images flattened to the image token, parts joined by "\n".
    let conv = vec![
        ChatMessage::system("S"),
        ChatMessage::user(vec![ContentPart::Image, text("First"), text("second")]),
    ];
    let opts = RenderOptions {
        add_generation_prompt: false,
        ..RenderOptions::default()
    };
    assert_eq!(
        tpl.render(&conv, &opts).expect("render"),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<image>\nFirst\nsecond<|im_end|>\n"
    );
}

#[test]
fn qwen2vl_style_parts_and_extra_kwargs() {
    let tpl = compile(QWEN2VL);
    assert_eq!(tpl.content_format(), ContentFormat::OpenAi);
    let conv = vec![
        ChatMessage::user(vec![
            text("Compare "),
            ContentPart::Image,
            text(" and "),
            ContentPart::Image,
        ]),
        ChatMessage::assistant("Same."),
    ];
    let mut opts = RenderOptions::default();
    opts.extra
        .insert("add_vision_id".to_owned(), JsonValue::Bool(true));
    assert_eq!(
        tpl.render(&conv, &opts).expect("render"),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nCompare Picture 1: <|vision_start|><|image_pad|><|vision_end|> and Picture 2: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\nSame.<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn tools_tool_calls_and_special_tokens() {
    let special = SpecialTokens {
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
        ..SpecialTokens::default()
    };
    let tpl = ChatTemplate::from_source(TOOLS.to_owned(), special).expect("compile");
    let conv = vec![
        ChatMessage::user("  weather?  "),
        ChatMessage::assistant_tool_calls(vec![ToolCall {
            id: "c1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city": "Zürich"}"#.into(),
        }]),
        ChatMessage::tool("c1", "sunny"),
    ];
    let opts = RenderOptions {
        add_generation_prompt: false,
        tools: Some(json!([{
            "function": {
                "description": "Weather <now> & 'later' in Zürich",
                "name": "get_weather",
                "parameters": {"properties": {"city": {"type": "string"}}, "type": "object"}
            },
            "type": "function"
        }])),
        ..RenderOptions::default()
    };
    assert_eq!(
        tpl.render(&conv, &opts).expect("render"),
        "<tools>[{\"function\": {\"description\": \"Weather <now> & 'later' in Zürich\", \"name\": \"get_weather\", \"parameters\": {\"properties\": {\"city\": {\"type\": \"string\"}}, \"type\": \"object\"}}, \"type\": \"function\"}]</tools>\nUSER: weather?\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}</tool_call>[content=True]\n<tool_response id=c1>sunny</tool_response>\n<s>|True|False|None"
    );

    let tpl = ChatTemplate::from_source(
        TOOLS.to_owned(),
        SpecialTokens {
            bos_token: Some("<s>".into()),
            ..SpecialTokens::default()
        },
    )
    .expect("compile");
    let opts = RenderOptions {
        add_generation_prompt: false,
        ..RenderOptions::default()
    };
    assert_eq!(
        tpl.render(&conv[..1], &opts).expect("render"),
        "USER: weather?\n<s>|False|True|None"
    );
}

#[test]
fn unparseable_tool_arguments_stay_a_string() {
    let msgs = template_messages(
        &[ChatMessage::assistant_tool_calls(vec![ToolCall {
            id: "x".into(),
            name: "f".into(),
            arguments: "not json".into(),
        }])],
        ContentFormat::String,
        "<image>",
    );
    assert_eq!(
        msgs[0],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "f", "arguments": "not json"}}
        ]})
    );
}

#[test]
fn raise_exception_fails_render() {
    let tpl = compile(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}ok",
    );
    let err = tpl
        .render(&[ChatMessage::assistant("x")], &RenderOptions::default())
        .expect_err("must fail");
    match err {
        TemplateError::Raised(msg) => assert_eq!(
            msg,
            "Conversation roles must alternate user/assistant/user/assistant/..."
        ),
        other => panic!("unexpected error: {other}"),
    }
    assert_eq!(
        tpl.render(&[ChatMessage::user("x")], &RenderOptions::default())
            .expect("render"),
        "ok"
    );
}

#[test]
fn python_string_methods() {
    let tpl = compile(
        "{{ messages[0].content.upper() }}|{{ messages[0].content.strip() }}|{{ messages[0].content.strip().startswith('he') }}|{{ messages[0].content.split() | join(',') }}{% for k, v in {'a': 1}.items() %}|{{ k }}={{ v }}{% endfor %}",
    );
    assert_eq!(
        tpl.render(
            &[ChatMessage::user(" hello world ")],
            &RenderOptions::default()
        )
        .expect("render"),
        " HELLO WORLD |hello world|True|hello,world|a=1"
    );
}

#[test]
fn tojson_matches_python_json_dumps() {
    let tpl = compile(
        "{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':'), sort_keys=True) }}|{{ x|tojson(ensure_ascii=True) }}|{{ [] | tojson(indent=2) }}|{{ 1.5 | tojson }}",
    );
    let mut opts = RenderOptions::default();
    opts.extra.insert(
        "x".to_owned(),
        json!({"a": "<&'>\n", "b": [1, {"é": null}]}),
    );
    assert_eq!(
        tpl.render(&[], &opts).expect("render"),
        "{\n  \"a\": \"<&'>\\n\",\n  \"b\": [\n    1,\n    {\n      \"é\": null\n    }\n  ]\n}|{\"a\":\"<&'>\\n\",\"b\":[1,{\"é\":null}]}|{\"a\": \"<&'>\\n\", \"b\": [1, {\"\\u00e9\": null}]}|[]|1.5"
    );
    let tpl = compile("{{ '<b>\"x\" & \\'y\\'' | tojson }}");
    assert_eq!(
        tpl.render(&[], &opts).expect("render"),
        r#""<b>\"x\" & 'y'""#
    );
}

#[test]
fn syntax_error_has_line() {
    let err = ChatTemplate::from_source(
        "line one\n{% if x %}\n{{ y }\n".to_owned(),
        SpecialTokens::default(),
    )
    .expect_err("must fail");
    match &err {
        TemplateError::Syntax { line, .. } => assert_eq!(*line, Some(3)),
        other => panic!("unexpected error: {other}"),
    }
    assert!(err.to_string().contains("at line 3"), "{err}");
}

#[test]
fn content_format_detection() {
    use ContentFormat::*;
    let cases = [
        (
            "{% for m in messages %}{{ m['content'] }}{% endfor %}",
            String,
        ),
        ("{%- for c in message.content %}{% endfor %}", OpenAi),
        (
            "{% for c in message[\"content\"] if c.type == 'text' %}{% endfor %}",
            OpenAi,
        ),
        (
            "{% for line in message['content'].split('\\n') %}{% endfor %}",
            String,
        ),
        (
            "{% set parts = msg['content'] %}{% for p in parts %}{% endfor %}",
            OpenAi,
        ),
        ("{% for c in message.contents %}{% endfor %}", String),
    ];
    for (src, expected) in cases {
        assert_eq!(detect_content_format(src), expected, "{src}");
    }
}

#[test]
fn strftime_formats_utc() {
    assert_eq!(
        strftime_utc(1_721_952_000, "%d %b %Y|%A %B %j %I%p %y-%m-%d %H:%M:%S"),
        "26 Jul 2024|Friday July 208 12AM 24-07-26 00:00:00"
    );
    assert_eq!(
        strftime_utc(
            951_782_400 + 86_399,
            "%d %b %Y|%A %B %j %I%p %y-%m-%d %H:%M:%S"
        ),
        "29 Feb 2000|Tuesday February 060 11PM 00-02-29 23:59:59"
    );
    assert_eq!(strftime_utc(0, "%-d/%-m %% %Q"), "1/1 % %Q");
    let tpl = compile("{{ strftime_now('%Y') | length }}");
    assert_eq!(
        tpl.render(&[], &RenderOptions::default()).expect("render"),
        "4"
    );
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "chat_template_test_{tag}_{}_{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.0.join(name), contents).expect("write file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn find_chat_template_precedence() {
    let dir = TempDir::new("precedence");
    assert_eq!(find_chat_template(&dir.0).expect("empty dir"), None);

    dir.write(
        "tokenizer_config.json",
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
            "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null}"#,
    );
    assert_eq!(
        find_chat_template(&dir.0).expect("tok").as_deref(),
        Some("D")
    );
    let special = load_special_tokens(&dir.0).expect("special");
    assert_eq!(special.bos_token.as_deref(), Some("<s>"));
    assert_eq!(special.eos_token.as_deref(), Some("</s>"));
    assert_eq!(special.pad_token, None);

    dir.write("processor_config.json", r#"{"chat_template": "P"}"#);
    assert_eq!(
        find_chat_template(&dir.0).expect("proc").as_deref(),
        Some("P")
    );

    dir.write("chat_template.json", r#"{"chat_template": "J"}"#);
    assert_eq!(
        find_chat_template(&dir.0).expect("json").as_deref(),
        Some("J")
    );

    dir.write("chat_template.jinja", "RAW{{ x }}\n");
    assert_eq!(
        find_chat_template(&dir.0).expect("jinja").as_deref(),
        Some("RAW{{ x }}\n")
    );
}

#[test]
fn find_chat_template_errors_name_the_file() {
    let dir = TempDir::new("errors");
    dir.write("tokenizer_config.json", r#"{"chat_template": "x", "#);
    let err = find_chat_template(&dir.0).expect_err("malformed");
    assert!(matches!(err, TemplateError::Json { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    assert!(load_special_tokens(&dir.0).is_err());

    dir.write(
        "tokenizer_config.json",
        r#"{"chat_template": [{"name": "rag", "template": "R"}]}"#,
    );
    let err = find_chat_template(&dir.0).expect_err("no default");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    assert!(err.to_string().contains("default"), "{err}");

    dir.write("processor_config.json", r#"{"chat_template": 3}"#);
    let err = find_chat_template(&dir.0).expect_err("not a string");
    assert!(err.to_string().contains("processor_config.json"), "{err}");
}

#[test]
fn role_names_reach_template() {
    let tpl = compile("{% for m in messages %}{{ m.role }};{% endfor %}");
    let conv = [
        ChatMessage::new(Role::Developer, "d"),
        ChatMessage::new(Role::Tool, "t"),
    ];
    assert_eq!(
        tpl.render(&conv, &RenderOptions::default())
            .expect("render"),
        "developer;tool;"
    );
}
