-- Newest leads first, best score first among equals, with a LIMIT: read from the index's front, no sort.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_created_score ON leads (created_at DESC, p_score DESC);
