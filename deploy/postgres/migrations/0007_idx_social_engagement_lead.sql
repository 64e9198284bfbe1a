-- A lead's social engagement, by type (counts per type are an index-only scan).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_social_engagement_lead ON social_engagement_events (lead_id, engagement_type);
