"""Per-channel chat state in Redis: history with swipes, settings, chats, the channel lock."""
