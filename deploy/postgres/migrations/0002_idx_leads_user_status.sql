-- A user's leads, filtered by status (GET /api/leads?status=…, the dashboard's counts).
-- CONCURRENTLY keeps the table writable while the index builds; it cannot run in a transaction, so the
-- runner executes this file on its own.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_user_status ON leads (user_id, status);
