"""The version tree of a conversation's messages (sync; call behind `db_task`).

Each message has a parent (None for a first question). A regenerated answer is a second
child of the same question; an edited question a second child of the same answer (or a
second root). The conversation on screen is the path from the root to
`Conversation.current_message`; the siblings of each message on it are its versions.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from ..models import Conversation, Message
from .errors import NotFound


@dataclass(frozen=True)
class Turn:
    """One message on screen and where it stands among its versions."""

    message: Message
    index: int  # 1-based position among its siblings, oldest first
    sibling_ids: list[str]

    @property
    def versions(self) -> dict:
        return {"index": self.index, "count": len(self.sibling_ids), "ids": self.sibling_ids}


@dataclass
class Tree:
    """All messages of one conversation, indexed for walking up and down."""

    by_id: dict
    children: dict  # parent id (None for roots) -> children, oldest first

    @classmethod
    def load(cls, conversation: Conversation) -> Tree:
        messages = list(conversation.messages.order_by("created_at", "pk"))
        children: dict = defaultdict(list)
        for message in messages:
            children[message.parent_id].append(message)
        return cls(by_id={m.pk: m for m in messages}, children=children)

    @classmethod
    def empty(cls) -> Tree:
        """The tree of a conversation made in this transaction: no query needed."""
        return cls(by_id={}, children=defaultdict(list))

    def newest_leaf_under(self, message: Message) -> Message:
        """Follow the newest child down: the latest answer of a branch."""
        while self.children.get(message.pk):
            message = self.children[message.pk][-1]
        return message

    def leaf(self, conversation: Conversation) -> Message | None:
        current = self.by_id.get(conversation.current_message_id)
        if current is not None:
            return current
        # No pointer (a conversation older than versions, or its message deleted): the
        # newest branch of the newest root.
        roots = self.children.get(None)
        return self.newest_leaf_under(roots[-1]) if roots else None

    def path_to(self, message: Message | None) -> list[Message]:
        """Root first, ending with `message`."""
        path: list[Message] = []
        seen: set = set()
        while message is not None and message.pk not in seen:
            seen.add(message.pk)
            path.append(message)
            message = self.by_id.get(message.parent_id)
        path.reverse()
        return path

    def turn(self, message: Message) -> Turn:
        siblings = self.children[message.parent_id]
        ids = [str(m.pk) for m in siblings]
        return Turn(message=message, index=ids.index(str(message.pk)) + 1, sibling_ids=ids)

    def all_messages(self) -> list[Message]:
        return sorted(self.by_id.values(), key=lambda m: (m.created_at, str(m.pk)))


def current_path(conversation: Conversation) -> list[Turn]:
    """The messages on screen, oldest first, each with its versions."""
    tree = Tree.load(conversation)
    return [tree.turn(m) for m in tree.path_to(tree.leaf(conversation))]


def switch_to(conversation: Conversation, message_id: uuid.UUID | None) -> Message:
    """Show the version `message_id` (any message of this conversation): the new leaf is
    the newest answer below it. Raises NotFound for a message of any other conversation."""
    tree = Tree.load(conversation)
    message = tree.by_id.get(message_id) if message_id else None
    if message is None:
        raise NotFound()
    leaf = tree.newest_leaf_under(message)
    # Not a new activity: the conversation keeps its place in the list (updated_at).
    Conversation.objects.filter(pk=conversation.pk).update(current_message=leaf)
    conversation.current_message = leaf
    return leaf
