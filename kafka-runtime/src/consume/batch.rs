//! [`Batch`]: the messages a batch worker gets in one call.

use std::ops::Deref;

use super::message::Message;

/// The messages a batch worker gets in one call: at most `take`, fetched within `within_ms`
/// of the first. A batch may hold messages of several partitions (and topics); each
/// partition's messages are in offset order. Their offsets are stored once the handler
/// returns `Ok`.
///
/// It dereferences to a slice of [`Message`]s; [`into_messages`](Self::into_messages) takes
/// them out.
pub struct Batch {
    messages: Vec<Message>,
}

impl Batch {
    pub(crate) fn new(messages: Vec<Message>) -> Self {
        Self { messages }
    }

    /// The messages, to keep or move elsewhere.
    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }
}

impl Deref for Batch {
    type Target = [Message];

    fn deref(&self) -> &[Message] {
        &self.messages
    }
}

impl IntoIterator for Batch {
    type Item = Message;
    type IntoIter = std::vec::IntoIter<Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.messages.into_iter()
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a Message;
    type IntoIter = std::slice::Iter<'a, Message>;

    fn into_iter(self) -> Self::IntoIter {
        self.messages.iter()
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("len", &self.messages.len()).finish()
    }
}
