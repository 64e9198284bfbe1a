-- Lead by e-mail address (dedup on import, inbound mail). Partial: about one lead in ten has no address,
-- and a query for an address never looks for NULL.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_email ON leads (email) WHERE email IS NOT NULL;
