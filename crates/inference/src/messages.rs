//! Engine-side chat message types.
//!
//! These are the messages the engine renders through a model's chat template
//! (see [`crate::chat_template`]). They deliberately carry no HTTP/OpenAI wire
//! concerns: images are represented only by their position in the
//! conversation. The `n`-th [`ContentPart::Image`] encountered when walking
//! the messages in order (and each message's parts in order) refers to the
//! `n`-th image of the request's image list.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The author of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// Developer instructions (OpenAI's newer name for system-like messages).
    Developer,
    /// The end user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The lowercase role name as chat templates expect it (`"user"`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One part of a multi-part message.
///
/// Serialized like the chat-template shape: `{"type":"text","text":"..."}`
/// and `{"type":"image"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "text", rename_all = "lowercase")]
pub enum ContentPart {
    /// A piece of text.
    Text(String),
    /// An image. Images are numbered by order of appearance across the whole
    /// conversation; that number indexes the request's image list.
    Image,
}

/// The content of a message: plain text or a list of parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Interleaved text and image parts.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// Number of image parts in this content.
    pub fn image_count(&self) -> usize {
        match self {
            MessageContent::Text(_) => 0,
            MessageContent::Parts(parts) => parts
                .iter()
                .filter(|p| matches!(p, ContentPart::Image))
                .count(),
        }
    }

    /// The content as a list of parts (plain text becomes one text part).
    pub fn to_parts(&self) -> Vec<ContentPart> {
        match self {
            MessageContent::Text(text) => vec![ContentPart::Text(text.clone())],
            MessageContent::Parts(parts) => parts.clone(),
        }
    }
}

impl From<String> for MessageContent {
    fn from(text: String) -> Self {
        MessageContent::Text(text)
    }
}

impl From<&str> for MessageContent {
    fn from(text: &str) -> Self {
        MessageContent::Text(text.to_owned())
    }
}

impl From<Vec<ContentPart>> for MessageContent {
    fn from(parts: Vec<ContentPart>) -> Self {
        MessageContent::Parts(parts)
    }
}

/// A function call made by the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id, echoed back by the matching tool message.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments as JSON text (as produced by the model / sent by the client).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote the message.
    pub role: Role,
    /// The content; `None` e.g. for an assistant message that only calls tools.
    pub content: Option<MessageContent>,
    /// Tool calls made by an assistant message (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For tool messages: the id of the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Optional participant / function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message with the given role and content and no tool data.
    pub fn new(role: Role, content: impl Into<MessageContent>) -> Self {
        Self {
            role,
            content: Some(content.into()),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<MessageContent>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// An assistant message that only calls tools (content `None`).
    pub fn assistant_tool_calls(tool_calls: Vec<ToolCall>) -> Self {
        Self {
            role: Role::Assistant,
            content: None,
            tool_calls,
            tool_call_id: None,
            name: None,
        }
    }

    /// A tool result answering the call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<MessageContent>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, content)
        }
    }

    /// Number of image parts in this message.
    pub fn image_count(&self) -> usize {
        self.content.as_ref().map_or(0, MessageContent::image_count)
    }
}

/// Total number of image parts in a conversation; a request must supply
/// exactly this many images.
pub fn count_images(messages: &[ChatMessage]) -> usize {
    messages.iter().map(ChatMessage::image_count).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&Role::Developer).ok().as_deref(),
            Some("\"developer\"")
        );
        let role: Role = serde_json::from_str("\"tool\"").expect("parse role");
        assert_eq!(role, Role::Tool);
        assert_eq!(Role::Assistant.to_string(), "assistant");
    }

    #[test]
    fn content_part_shape() {
        let parts = vec![ContentPart::Image, ContentPart::Text("hi".into())];
        let json = serde_json::to_value(&parts).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!([{"type": "image"}, {"type": "text", "text": "hi"}])
        );
        let back: Vec<ContentPart> = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, parts);
    }

    #[test]
    fn counts_images_in_order() {
        let messages = vec![
            ChatMessage::system("sys"),
            ChatMessage::user(vec![
                ContentPart::Image,
                ContentPart::Text("a".into()),
                ContentPart::Image,
            ]),
            ChatMessage::assistant_tool_calls(vec![]),
            ChatMessage::user(vec![ContentPart::Image]),
        ];
        assert_eq!(count_images(&messages), 3);
        assert_eq!(messages[1].image_count(), 2);
        assert_eq!(messages[2].image_count(), 0);
        assert_eq!(
            MessageContent::from("x").to_parts(),
            vec![ContentPart::Text("x".into())]
        );
    }

    #[test]
    fn tool_message_carries_call_id() {
        let m = ChatMessage::tool("call_1", "42");
        assert_eq!(m.role, Role::Tool);
        assert_eq!(m.tool_call_id.as_deref(), Some("call_1"));
        assert_eq!(m.content, Some(MessageContent::Text("42".into())));
    }
}
