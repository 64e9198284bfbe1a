-- A conversation's messages, newest first.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_conversation_created ON dm_messages (conversation_id, created_at DESC);
