-- Create tables
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id VARCHAR(64) PRIMARY KEY,
    wallet_address VARCHAR(42) NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    ticket_id VARCHAR(64),
    price_paid DECIMAL(18, 8),
    payment_method VARCHAR(32),
    is_resale BOOLEAN DEFAULT false,
    status VARCHAR(16),
    timestamp TIMESTAMP DEFAULT NOW()
);

CREATE INDEX idx_transactions_wallet ON transactions(wallet_address);
CREATE INDEX idx_transactions_timestamp ON transactions(timestamp);
CREATE INDEX idx_transactions_event ON transactions(event_id);

CREATE TABLE IF NOT EXISTS fraud_predictions (
    id SERIAL PRIMARY KEY,
    transaction_id VARCHAR(64) NOT NULL,
    fraud_score DECIMAL(5, 3),
    decision VARCHAR(16),
    features JSONB,
    model_version VARCHAR(16),
    timestamp TIMESTAMP DEFAULT NOW()
);

CREATE INDEX idx_fraud_predictions_txn ON fraud_predictions(transaction_id);
CREATE INDEX idx_fraud_predictions_timestamp ON fraud_predictions(timestamp);

CREATE TABLE IF NOT EXISTS security_events (
    id SERIAL PRIMARY KEY,
    event_type VARCHAR(32) NOT NULL,
    severity VARCHAR(16),
    source_ip VARCHAR(45),
    user_id VARCHAR(64),
    metadata JSONB,
    timestamp TIMESTAMP DEFAULT NOW()
);

CREATE INDEX idx_security_events_type ON security_events(event_type);
CREATE INDEX idx_security_events_timestamp ON security_events(timestamp);

CREATE TABLE IF NOT EXISTS blacklisted_wallets (
    wallet_address VARCHAR(42) PRIMARY KEY,
    reason TEXT,
    timestamp TIMESTAMP DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS admin_audit_log (
    id SERIAL PRIMARY KEY,
    admin_user VARCHAR(64),
    action VARCHAR(128),
    ip_address VARCHAR(45),
    metadata JSONB,
    timestamp TIMESTAMP DEFAULT NOW()
);

-- Archive tables
CREATE TABLE IF NOT EXISTS transactions_archive (LIKE transactions INCLUDING ALL);
CREATE TABLE IF NOT EXISTS fraud_predictions_archive (LIKE fraud_predictions INCLUDING ALL);

-- Materialized views
CREATE MATERIALIZED VIEW kpi_hourly AS
SELECT 
    DATE_TRUNC('hour', t.timestamp) AS hour,
    COUNT(DISTINCT t.transaction_id) AS total_transactions,
    COUNT(DISTINCT t.wallet_address) AS unique_wallets,
    SUM(t.price_paid) AS total_revenue,
    AVG(fp.fraud_score) AS avg_fraud_score,
    SUM(CASE WHEN fp.decision = 'BLOCKED' THEN 1 ELSE 0 END) AS blocked_count,
    SUM(CASE WHEN fp.decision = 'APPROVED' THEN 1 ELSE 0 END) AS approved_count
FROM transactions t
LEFT JOIN fraud_predictions fp ON t.transaction_id = fp.transaction_id
WHERE t.timestamp > NOW() - INTERVAL '7 days'
GROUP BY hour
ORDER BY hour DESC;

CREATE UNIQUE INDEX idx_kpi_hourly_hour ON kpi_hourly(hour);

-- Grant permissions
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO admin;
