-- A lead's website activity, newest first. Also what ON DELETE CASCADE uses to find a lead's events.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_events_lead_timestamp ON web_tracking_events (lead_id, "timestamp" DESC);
